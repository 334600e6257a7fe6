package api

import (
	"net/http"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

type tokenRequest struct {
	Provisioner string            `json:"provisioner,omitempty"`
	SANs        []string          `json:"sans"`
	TTL         string            `json:"ttl"`
	Properties  map[string]string `json:"properties"`
}

type tokenResponse struct {
	Token       string    `json:"token"`
	ID          string    `json:"id"`
	Provisioner string    `json:"provisioner"`
	SANs        []string  `json:"sans"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// createToken mints a single-use enrollment token. The secret is in this
// reply and nowhere else.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	admin, ok := s.admin(w, r)
	if !ok {
		return
	}
	var req tokenRequest
	if err := decode(w, r, maxAdminBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	m, err := s.CA.MintToken(r.Context(), admin, authority.TokenRequest{Provisioner: req.Provisioner, SANs: req.SANs, TTL: ttl, Properties: req.Properties})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, tokenResponse{Token: m.Secret, ID: m.Token.ID, Provisioner: m.Token.Provisioner,
		SANs: m.Token.SANs, ExpiresAt: m.Token.ExpiresAt})
}

// revokeToken withdraws an unused enrollment token.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.admin(w, r); !ok {
		return
	}
	if err := s.CA.RevokeToken(r.Context(), r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// admin authenticates the request's admin and checks the admin role.
func (s *Server) admin(w http.ResponseWriter, r *http.Request) (*fsm.Admin, bool) {
	admin, err := s.CA.AuthenticateAdmin(r.Context(), bearer(r))
	if err == nil {
		err = authority.Authorize(admin, authority.RoleAdmin)
	}
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	return admin, true
}

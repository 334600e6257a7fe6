package api

import (
	"net/http"
	"time"

	"github.com/quorumca/quorumca/authority"
)

type tokenRequest struct {
	SANs       []string          `json:"sans"`
	TTL        string            `json:"ttl"`
	Properties map[string]string `json:"properties"`
}

type tokenResponse struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	SANs      []string  `json:"sans"`
	ExpiresAt time.Time `json:"expires_at"`
}

// createToken mints a single-use enrollment token. The secret is in this
// reply and nowhere else.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	admin, err := s.CA.AuthenticateAdmin(r.Context(), bearer(r))
	if err == nil {
		err = authority.Authorize(admin, authority.RoleAdmin)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req tokenRequest
	if err := decode(w, r, maxAdminBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			s.fail(w, r, &requestError{http.StatusBadRequest, "bad_request", "field \"ttl\": not a duration such as \"24h\""})
			return
		}
	}
	m, err := s.CA.MintToken(r.Context(), admin, authority.TokenRequest{SANs: req.SANs, TTL: ttl, Properties: req.Properties})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, tokenResponse{Token: m.Secret, ID: m.Token.ID, SANs: m.Token.SANs, ExpiresAt: m.Token.ExpiresAt})
}

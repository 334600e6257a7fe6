package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

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
	admin, ctx, ok := s.admin(w, r, authority.PermOperate)
	if !ok {
		return
	}
	var req apitypes.TokenRequest
	if err := decode(w, r, maxAdminBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ms, err := s.CA.MintTokens(ctx, admin, authority.TokenRequest{Provisioner: req.Provisioner, SANs: req.SANs,
		TTL: ttl, Properties: req.Properties, Count: req.Count})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Count == 0 {
		writeJSON(w, http.StatusCreated, tokenJSON(&ms[0]))
		return
	}
	// A batch: a file of tokens for a fleet roll-out, JSON lines or plain.
	if r.URL.Query().Get("format") == "text" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusCreated)
		for _, m := range ms {
			fmt.Fprintln(w, m.Secret)
		}
		return
	}
	out := make([]tokenResponse, len(ms))
	for i := range ms {
		out[i] = tokenJSON(&ms[i])
	}
	writeJSON(w, http.StatusCreated, map[string]any{"tokens": out})
}

func tokenJSON(m *authority.MintedToken) tokenResponse {
	return tokenResponse{Token: m.Secret, ID: m.Token.ID, Provisioner: m.Token.Provisioner,
		SANs: m.Token.SANs, ExpiresAt: m.Token.ExpiresAt}
}

type tokenInfo struct {
	ID          string            `json:"id"`
	Provisioner string            `json:"provisioner"`
	SANs        []string          `json:"sans"`
	Properties  map[string]string `json:"properties,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	ExpiresAt   time.Time         `json:"expires_at"`
	CreatedBy   string            `json:"created_by,omitempty"`
}

// listTokens lists outstanding tokens (never their secrets: only hashes
// are stored).
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermRead)
	if !ok {
		return
	}
	cursor, limit, err := page(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	toks, next, err := s.CA.OutstandingTokens(ctx, r.URL.Query().Get("provisioner"), cursor, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []tokenInfo{}
	for _, t := range toks {
		out = append(out, tokenInfo{ID: t.ID, Provisioner: t.Provisioner, SANs: t.SANs, Properties: t.Properties,
			CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, CreatedBy: t.CreatedBy})
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out, "next_cursor": encodeCursor(next)})
}

// revokeToken withdraws an unused enrollment token.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermOperate)
	if !ok {
		return
	}
	if err := s.CA.RevokeToken(ctx, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// admin authenticates an admin, by bearer token or by admin client
// certificate, checks the permission, and returns a context that carries the
// admin as the actor of whatever the request proposes.
func (s *Server) admin(w http.ResponseWriter, r *http.Request, p authority.Permission) (*fsm.Admin, context.Context, bool) {
	var admin *fsm.Admin
	var err error
	if tok := bearer(r); tok != "" || peerCert(r) == nil {
		admin, err = s.CA.AuthenticateAdmin(r.Context(), tok)
	} else {
		admin, err = s.CA.AuthenticateAdminCert(r.Context(), peerCert(r))
	}
	if err == nil {
		err = authority.Authorize(admin, p)
	}
	if err != nil {
		s.fail(w, r, err)
		return nil, nil, false
	}
	return admin, authority.WithOrigin(r.Context(), authority.Actor(admin), remoteAddr(r)), true
}

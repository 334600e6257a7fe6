package api

import (
	"encoding/base64"
	"net/http"
	"time"

	"github.com/quorumca/quorumca/authority"
)

// External account binding keys (RFC 8555 section 7.3.4) for ACME
// provisioners with require_eab: an admin mints one per client and hands
// over its id and HMAC key, which bind one new account, once.

type eabRequest struct {
	Provisioner string `json:"provisioner"`
	Reference   string `json:"reference,omitempty"`
	TTL         string `json:"ttl,omitempty"`
}

type eabResponse struct {
	ID          string    `json:"id"`
	Key         string    `json:"key"` // base64url, as ACME clients take it
	Provisioner string    `json:"provisioner"`
	Reference   string    `json:"reference,omitempty"`
	ExpiresAt   time.Time `json:"expires_at"`
}

func (s *Server) createEAB(w http.ResponseWriter, r *http.Request) {
	admin, ctx, ok := s.admin(w, r, authority.PermOperate)
	if !ok {
		return
	}
	var req eabRequest
	if err := decode(w, r, maxAdminBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	k, err := s.CA.NewEABKey(ctx, admin, req.Provisioner, req.Reference, ttl)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, eabResponse{ID: k.ID, Key: base64.RawURLEncoding.EncodeToString(k.Key),
		Provisioner: k.Provisioner, Reference: k.Reference, ExpiresAt: k.ExpiresAt})
}

func (s *Server) revokeEAB(w http.ResponseWriter, r *http.Request) {
	admin, ctx, ok := s.admin(w, r, authority.PermOperate)
	if !ok {
		return
	}
	if err := s.CA.RevokeEABKey(ctx, admin, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

package api

import (
	"encoding/base64"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// Lists page with ?limit=&cursor=; replies carry "next_cursor" ("" at the end).

func page(r *http.Request) ([]byte, int, error) {
	q := r.URL.Query()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return nil, 0, badRequest("limit: 1-1000")
		}
		limit = n
	}
	var cursor []byte
	if s := q.Get("cursor"); s != "" {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil, 0, badRequest("cursor: not a cursor from a previous page")
		}
		cursor = b
	}
	return cursor, limit, nil
}

func encodeCursor(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// remoteAddr is the client's address as this node sees it.
func remoteAddr(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// queryTime reads an RFC 3339 time parameter.
func queryTime(r *http.Request, name string) (time.Time, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, badRequest(name + ": not an RFC 3339 time such as 2026-12-01T00:00:00Z")
	}
	return t, nil
}

func adminJSON(a *fsm.Admin) apitypes.Admin {
	kind := "token"
	if a.CertSerial != "" {
		kind = "certificate"
	}
	return apitypes.Admin{ID: a.ID, Name: a.Name, Role: a.Role, Kind: kind, CertSerial: a.CertSerial,
		CreatedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt, RevokedAt: a.RevokedAt, Recovery: a.Recovery}
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	a, _, ok := s.admin(w, r, authority.PermRead)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, adminJSON(a))
}

// createAdmin makes an admin credential: a token (shown once), or with a
// CSR a client certificate of the admin authority. A recovery credential
// may do this once.
func (s *Server) createAdmin(w http.ResponseWriter, r *http.Request) {
	var req apitypes.AdminRequest
	by, ctx, ok := s.admin(w, r, authority.PermCreateAdmin)
	if !ok {
		return
	}
	if err := decode(w, r, maxAdminBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.CA.NewAdmin(ctx, authority.AdminRequest{Name: req.Name, Role: req.Role, TTL: ttl, CSR: []byte(req.CSR), By: by})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := map[string]any{"admin": adminJSON(&c.Admin)}
	if c.Token != "" {
		out["token"] = c.Token
	} else {
		out["certificate"], out["chain"] = string(authority.EncodePEM(c.Cert)), pemList(c.Chain)
	}
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) listAdmins(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermRead)
	if !ok {
		return
	}
	as, err := s.CA.Admins(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []apitypes.Admin{}
	for _, a := range as {
		out = append(out, adminJSON(a))
	}
	writeJSON(w, http.StatusOK, map[string]any{"admins": out})
}

func (s *Server) revokeAdmin(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermConfigure)
	if !ok {
		return
	}
	if err := s.CA.RevokeAdmin(ctx, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

package api

import (
	"net/http"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// searchCerts lists certificates by SAN, provisioner, property, status and
// expiry window, from the indexes.
func (s *Server) searchCerts(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermRead)
	if !ok {
		return
	}
	cursor, limit, err := page(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	fq := fsm.CertQuery{SAN: q.Get("san"), Provisioner: q.Get("provisioner"), Property: q.Get("property"),
		Status: q.Get("status"), Cursor: cursor, Limit: limit}
	if fq.ExpiresAfter, err = queryTime(r, "expires_after"); err == nil {
		fq.ExpiresBefore, err = queryTime(r, "expires_before")
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if serial := q.Get("serial"); serial != "" {
		c, err := s.CA.Cert(ctx, serial)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"certs": []apitypes.Cert{s.certJSON(c)}, "next_cursor": ""})
		return
	}
	certs, next, err := s.CA.SearchCerts(ctx, fq)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []apitypes.Cert{}
	for _, c := range certs {
		out = append(out, s.certJSON(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"certs": out, "next_cursor": encodeCursor(next)})
}

// adminRevoke revokes a certificate by serial (operator or admin).
func (s *Server) adminRevoke(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Reason string `json:"reason,omitempty"`
	}
	admin, ctx, ok := s.admin(w, r, authority.PermOperate)
	if !ok {
		return
	}
	if r.ContentLength != 0 {
		if err := decode(w, r, maxAdminBody, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	c, err := s.CA.Revoke(ctx, authority.RevokeRequest{Serial: r.PathValue("serial"), Reason: req.Reason, Admin: admin})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		apitypes.Cert
		confirmation
	}{s.certJSON(c.Cert), confirmationOf(c)})
}

package api

import (
	"crypto/x509"
	"net/http"
	"time"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

func (s *Server) getCert(w http.ResponseWriter, r *http.Request) {
	c, err := s.CA.Cert(r.Context(), r.PathValue("serial"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.certJSON(c))
}

func (s *Server) certJSON(c *fsm.Cert) apitypes.Cert {
	out := apitypes.Cert{
		Serial: c.Serial, Subject: c.Subject, SANs: c.SANs, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		Authority: c.Authority, TokenID: c.TokenID, Provisioner: c.Provisioner, Properties: c.Properties,
		Requester: c.Requester, RenewedFrom: c.RenewedFrom, IssuedAt: c.IssuedAt, Status: "valid",
		Certificate: string(authority.EncodePEM(c.DER)), Chain: pemList(s.CA.Chain(c)),
	}
	switch {
	case c.Revoked():
		out.Status, out.RevokedAt, out.Reason = "revoked", &c.RevokedAt, authority.ReasonName(c.RevocationReason)
	case time.Now().After(c.NotAfter):
		out.Status = "expired"
	}
	return out
}

func (s *Server) authorityRoots(w http.ResponseWriter, r *http.Request) {
	roots, err := s.CA.AuthorityRoots(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"roots": pemList(roots)})
}

func (s *Server) roots(w http.ResponseWriter, r *http.Request) {
	roots, err := s.CA.Roots(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"roots": pemList(roots)})
}

func notAfter(der []byte) (time.Time, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return time.Time{}, err
	}
	return c.NotAfter, nil
}

package api

import (
	"crypto/x509"
	"net/http"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

type certResponse struct {
	Serial      string            `json:"serial"`
	Subject     string            `json:"subject"`
	SANs        []string          `json:"sans"`
	NotBefore   time.Time         `json:"not_before"`
	NotAfter    time.Time         `json:"not_after"`
	Authority   string            `json:"authority"`
	TokenID     string            `json:"token_id,omitempty"`
	Provisioner string            `json:"provisioner,omitempty"`
	Properties  map[string]string `json:"properties,omitempty"`
	Requester   string            `json:"requester"`
	RenewedFrom string            `json:"renewed_from,omitempty"`
	IssuedAt    time.Time         `json:"issued_at"`
	Status      string            `json:"status"` // valid, revoked or expired
	RevokedAt   *time.Time        `json:"revoked_at,omitempty"`
	Reason      string            `json:"revocation_reason,omitempty"`
	Certificate string            `json:"certificate"`
	Chain       []string          `json:"chain"`
}

func (s *Server) getCert(w http.ResponseWriter, r *http.Request) {
	c, err := s.CA.Cert(r.Context(), r.PathValue("serial"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.certJSON(c))
}

func (s *Server) certJSON(c *fsm.Cert) certResponse {
	out := certResponse{
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

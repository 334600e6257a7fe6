package api

import (
	"crypto/x509"
	"net/http"
	"strconv"
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

// renewalInfo answers when to renew a certificate, in RFC 9773's form,
// with Retry-After saying when to ask again: the agent and JSON clients
// follow the schedule ACME clients get at renewalInfo.
func (s *Server) renewalInfo(w http.ResponseWriter, r *http.Request) {
	win, _, err := s.CA.RenewalInfo(r.Context(), r.PathValue("serial"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(win.RetryAfter.Seconds())))
	writeJSON(w, http.StatusOK, RenewalInfoJSON(win))
}

// RenewalInfoJSON is a renewal window as RFC 9773 shows it.
func RenewalInfoJSON(win *authority.RenewalWindow) apitypes.RenewalInfo {
	out := apitypes.RenewalInfo{Reason: win.Reason}
	out.SuggestedWindow.Start, out.SuggestedWindow.End = win.Start.UTC(), win.End.UTC()
	return out
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

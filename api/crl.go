package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/quorumca/quorumca/authority"
)

// crl serves an issuer's current CRL (DER). Without an issuer in the path it
// is the newest active issuer's; /v1/crl is the default authority's.
func (s *Server) crl(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == "" {
		name = authority.DefaultAuthority
	}
	c, err := s.CA.CRL(r.Context(), name, r.PathValue("issuer"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Last-Modified", c.ThisUpdate.UTC().Format(http.TimeFormat))
	w.Header().Set("Expires", c.NextUpdate.UTC().Format(http.TimeFormat))
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(time.Until(c.NextUpdate).Seconds())/2))
	w.Write(c.DER)
}

// issuerCert serves an authority's issuing certificate (DER), the
// caIssuers URL of issued certificates.
func (s *Server) issuerCert(w http.ResponseWriter, r *http.Request) {
	der, err := s.CA.IssuerCert(r.Context(), r.PathValue("name"), r.PathValue("issuer"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-cert")
	w.Write(der)
}

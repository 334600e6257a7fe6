package api

import (
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// crl serves an issuer's current CRL (DER). Without an issuer in the path it
// is the newest active issuer's; /v1/crl is the default authority's.
func (s *Server) crl(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == "" {
		name = authority.DefaultAuthority
	}
	shard := -1
	if v := r.PathValue("shard"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 0 || strconv.Itoa(k) != v {
			s.fail(w, r, fmt.Errorf("%w: no such CRL shard (shards are numbered 0, 1, ...)", authority.ErrNotFound))
			return
		}
		shard = k
	}
	c, err := s.CA.CRL(r.Context(), name, r.PathValue("issuer"), shard)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.serveCRLs(w, r, "application/pkix-crl", c)
}

// rootCRL serves the CRL of an authority's root, which lists its revoked
// intermediates: the CRL distribution point of intermediates.
func (s *Server) rootCRL(w http.ResponseWriter, r *http.Request) {
	c, err := s.CA.RootCRL(r.Context(), r.PathValue("name"), r.PathValue("root"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.serveCRLs(w, r, "application/pkix-crl", c)
}

// crlBundle serves, as PEM, every CRL a relying party that checks whole
// chains needs for an authority (nginx ssl_crl, HAProxy crl-file): the
// root's and each issuer's.
func (s *Server) crlBundle(w http.ResponseWriter, r *http.Request) {
	cs, err := s.CA.CRLBundle(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.serveCRLs(w, r, "application/x-pem-file", cs...)
}

// serveCRLs writes CRLs, one as DER or several as PEM, with cache headers
// that keep a refetching relying party within the CRL interval of a
// revocation (RFC 5019-style validators for cheap refetches).
func (s *Server) serveCRLs(w http.ResponseWriter, r *http.Request, contentType string, cs ...*fsm.CRL) {
	next, last := cs[0].NextUpdate, cs[0].ThisUpdate
	// The ETag is a digest of every CRL's ID and number: a bundle holds up
	// to MaxCRLShards CRLs per issuer, and a list of them all would make
	// headers larger than proxies in front of the nodes take.
	tags := sha256.New()
	for _, c := range cs {
		if c.NextUpdate.Before(next) {
			next = c.NextUpdate
		}
		if c.ThisUpdate.After(last) {
			last = c.ThisUpdate
		}
		fmt.Fprintf(tags, "%s\x00%d\x00", c.Issuer, c.Number)
	}
	etag := fmt.Sprintf(`"%x"`, tags.Sum(nil)[:16])
	maxAge := min(time.Until(next), max(s.CRLMaxAge, time.Second))
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Last-Modified", last.UTC().Format(http.TimeFormat))
	h.Set("Expires", next.UTC().Format(http.TimeFormat))
	h.Set("ETag", etag)
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d, must-revalidate", int(maxAge.Seconds())))
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if len(cs) == 1 && contentType == "application/pkix-crl" {
		w.Write(cs[0].DER)
		return
	}
	for _, c := range cs {
		pem.Encode(w, &pem.Block{Type: "X509 CRL", Bytes: c.DER})
	}
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

// rootCert serves an authority's root certificate (DER), the caIssuers URL
// of its intermediates.
func (s *Server) rootCert(w http.ResponseWriter, r *http.Request) {
	der, err := s.CA.RootCert(r.PathValue("name"), r.PathValue("root"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-cert")
	w.Write(der)
}

package api

import (
	"net/http"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// Admin endpoints of an authority's delegated OCSP responder: a key of its
// own, certified by each issuer, that signs the authority's OCSP answers.

func ocspResponderJSON(r *fsm.OCSPResponder) apitypes.OCSPResponder {
	out := apitypes.OCSPResponder{Authority: r.Authority, KeyURI: r.KeyURI, TTL: r.TTL.String(),
		Certificates: []apitypes.OCSPResponderCertificate{}, Version: r.Version, UpdatedAt: r.UpdatedAt}
	for _, c := range r.Certs {
		out.Certificates = append(out.Certificates, apitypes.OCSPResponderCertificate{Issuer: c.Issuer,
			Certificate: string(authority.EncodePEM(c.DER)), NotAfter: c.NotAfter})
	}
	return out
}

func (s *Server) setOCSPResponder(w http.ResponseWriter, r *http.Request) {
	var req apitypes.SetOCSPResponder
	ctx, ok := s.adminDecode(w, r, authority.PermConfigure, &req)
	if !ok {
		return
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp, err := s.CA.SetOCSPResponder(ctx, authority.OCSPResponderRequest{Name: r.PathValue("name"), Key: keySpec(req.KeyOptions, req.Key), TTL: ttl})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ocspResponderJSON(resp))
}

func (s *Server) getOCSPResponder(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := s.admin(w, r, authority.PermRead); !ok {
		return
	}
	resp, err := s.CA.OCSPResponder(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ocspResponderJSON(resp))
}

func (s *Server) deleteOCSPResponder(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermConfigure)
	if !ok {
		return
	}
	if err := s.CA.DeleteOCSPResponder(ctx, r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

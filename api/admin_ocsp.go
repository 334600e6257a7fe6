package api

import (
	"net/http"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// Admin endpoints of an authority's delegated keys: a key of its own,
// certified by each issuer, that signs the authority's OCSP answers
// (ocsp-responder) or decrypts and answers SCEP requests (scep-ra).

// delegateRoles maps the path's last element to the role.
var delegateRoles = map[string]string{"ocsp-responder": fsm.RoleOCSP, "scep-ra": fsm.RoleSCEP}

func ocspResponderJSON(r *fsm.OCSPResponder) apitypes.OCSPResponder {
	out := apitypes.OCSPResponder{Authority: r.Authority, KeyURI: r.KeyURI, TTL: r.TTL.String(),
		Certificates: []apitypes.OCSPResponderCertificate{}, Version: r.Version, UpdatedAt: r.UpdatedAt}
	for _, c := range r.Certs {
		out.Certificates = append(out.Certificates, apitypes.OCSPResponderCertificate{Issuer: c.Issuer,
			Certificate: string(authority.EncodePEM(c.DER)), NotAfter: c.NotAfter})
	}
	return out
}

func (s *Server) setDelegate(role string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
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
		resp, err := s.CA.SetDelegate(ctx, role, authority.DelegateRequest{Name: r.PathValue("name"), Key: keySpec(req.KeyOptions, req.Key), TTL: ttl})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, ocspResponderJSON(resp))
	}
}

func (s *Server) getDelegate(role string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := s.admin(w, r, authority.PermRead); !ok {
			return
		}
		resp, err := s.CA.Delegate(role, r.PathValue("name"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, ocspResponderJSON(resp))
	}
}

func (s *Server) deleteDelegate(role string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, ctx, ok := s.admin(w, r, authority.PermConfigure)
		if !ok {
			return
		}
		if err := s.CA.DeleteDelegate(ctx, role, r.PathValue("name")); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

package api

import (
	"net/http"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
)

// renew issues a successor to the certificate that authenticates the
// request: the TLS client certificate, or (behind a proxy that ends TLS) a
// renewal token signed with its key.
func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	var req apitypes.RenewRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, maxSignBody, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	iss, err := s.CA.Renew(r.Context(), authority.RenewRequest{
		PeerCert: peerCert(r), Bearer: bearer(r), CSR: []byte(req.CSR), Audiences: s.renewAud,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeIssued(w, iss)
}

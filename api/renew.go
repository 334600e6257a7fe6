package api

import (
	"net/http"

	"github.com/quorumca/quorumca/authority"
)

type renewRequest struct {
	CSR string `json:"csr,omitempty"` // optional: a new key, same names
}

// renew issues a successor to the certificate that authenticates the
// request: the TLS client certificate, or (behind a proxy that ends TLS) a
// renewal token signed with its key.
func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	var req renewRequest
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
	writeIssued(w, iss)
}

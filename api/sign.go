package api

import (
	"net/http"
	"time"

	"github.com/quorumca/quorumca/authority"
)

type signRequest struct {
	CSR   string `json:"csr"`
	Token string `json:"token"`
}

type signResponse struct {
	Serial      string    `json:"serial"`
	Certificate string    `json:"certificate"`
	Chain       []string  `json:"chain"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
}

// sign issues a certificate for a CSR against a single-use token.
func (s *Server) sign(w http.ResponseWriter, r *http.Request) {
	var req signRequest
	if err := decode(w, r, maxSignBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.CSR == "" || req.Token == "" {
		s.fail(w, r, &requestError{http.StatusBadRequest, "bad_request", "fields \"csr\" and \"token\" are required"})
		return
	}
	iss, err := s.CA.SignWithToken(r.Context(), []byte(req.CSR), req.Token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, signResponse{
		Serial:      iss.Cert.Serial,
		Certificate: string(authority.EncodePEM(iss.Cert.DER)),
		Chain:       pemList(iss.Chain),
		NotBefore:   iss.Cert.NotBefore,
		NotAfter:    iss.Cert.NotAfter,
	})
}

func pemList(ders [][]byte) []string {
	out := make([]string, len(ders))
	for i, d := range ders {
		out[i] = string(authority.EncodePEM(d))
	}
	return out
}

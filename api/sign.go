package api

import (
	"net/http"
	"time"

	"github.com/quorumca/quorumca/authority"
)

type signRequest struct {
	CSR   string `json:"csr"`
	Token string `json:"token"`
	TTL   string `json:"ttl,omitempty"`
}

type signResponse struct {
	Serial      string    `json:"serial"`
	Certificate string    `json:"certificate"`
	Chain       []string  `json:"chain"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	RenewedFrom string    `json:"renewed_from,omitempty"`
}

// sign issues a certificate for a CSR against a single-use token (an
// enrollment token or a JWT from a jwk provisioner).
func (s *Server) sign(w http.ResponseWriter, r *http.Request) {
	var req signRequest
	if err := decode(w, r, maxSignBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.CSR == "" || req.Token == "" {
		s.fail(w, r, badRequest("fields \"csr\" and \"token\" are required"))
		return
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	iss, err := s.CA.Sign(r.Context(), authority.SignRequest{
		CSR: []byte(req.CSR), Token: req.Token, TTL: ttl, Audiences: audiences(r),
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeIssued(w, iss)
}

func writeIssued(w http.ResponseWriter, iss *authority.Issued) {
	writeJSON(w, http.StatusCreated, signResponse{
		Serial:      iss.Cert.Serial,
		Certificate: string(authority.EncodePEM(iss.Cert.DER)),
		Chain:       pemList(iss.Chain),
		NotBefore:   iss.Cert.NotBefore,
		NotAfter:    iss.Cert.NotAfter,
		RenewedFrom: iss.Cert.RenewedFrom,
	})
}

// audiences are the URLs a self-minted token for this request may name:
// this path on the host the client addressed.
func audiences(r *http.Request) []string {
	return []string{"https://" + r.Host + r.URL.Path}
}

func parseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, badRequest("field \"ttl\": not a positive duration such as \"24h\"")
	}
	return d, nil
}

func pemList(ders [][]byte) []string {
	out := make([]string, len(ders))
	for i, d := range ders {
		out[i] = string(authority.EncodePEM(d))
	}
	return out
}

package api

import (
	"net/http"
	"time"

	"github.com/quorumca/quorumca/authority"
)

type certResponse struct {
	Serial      string    `json:"serial"`
	Subject     string    `json:"subject"`
	SANs        []string  `json:"sans"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Authority   string    `json:"authority"`
	TokenID     string    `json:"token_id,omitempty"`
	Requester   string    `json:"requester"`
	IssuedAt    time.Time `json:"issued_at"`
	Certificate string    `json:"certificate"`
	Chain       []string  `json:"chain"`
}

func (s *Server) getCert(w http.ResponseWriter, r *http.Request) {
	c, err := s.CA.Cert(r.Context(), r.PathValue("serial"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, certResponse{
		Serial: c.Serial, Subject: c.Subject, SANs: c.SANs, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		Authority: c.Authority, TokenID: c.TokenID, Requester: c.Requester, IssuedAt: c.IssuedAt,
		Certificate: string(authority.EncodePEM(c.DER)), Chain: pemList(s.CA.Chain(c)),
	})
}

func (s *Server) roots(w http.ResponseWriter, r *http.Request) {
	roots, err := s.CA.Roots(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"roots": pemList(roots)})
}

package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
)

// sign issues a certificate for a CSR against a single-use token (an
// enrollment token or a JWT from a jwk provisioner).
func (s *Server) sign(w http.ResponseWriter, r *http.Request) {
	var req apitypes.SignRequest
	if err := decode(w, r, maxSignBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.CSR == "" || (req.Token == "") == (req.Provisioner == "") {
		s.fail(w, r, badRequest("fields \"csr\" and either \"token\" or (with a factory certificate in the TLS handshake) \"provisioner\" are required"))
		return
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var iss *authority.Issued
	if req.Provisioner != "" {
		iss, err = s.CA.SignX5C(r.Context(), authority.X5CRequest{
			Provisioner: req.Provisioner, CSR: []byte(req.CSR), Chain: peerChain(r), TTL: ttl,
		})
	} else {
		iss, err = s.CA.Sign(r.Context(), authority.SignRequest{
			CSR: []byte(req.CSR), Token: req.Token, TTL: ttl, Audiences: s.signAud,
		})
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeIssued(w, iss)
}

func (s *Server) writeIssued(w http.ResponseWriter, iss *authority.Issued) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(s.chains.appendIssued(nil, iss))
}

// appendIssued writes an apitypes.Signed exactly as writeJSON would, with the
// chain's part taken from the cache: encoding the same chain for every
// certificate, then indenting it, was most of writing an answer (5% of a
// node's CPU when issuing).
func (c *chainCache) appendIssued(out []byte, iss *authority.Issued) []byte {
	str := func(s string) []byte { b, _ := json.Marshal(s); return b }
	tim := func(t time.Time) []byte { b, _ := t.MarshalJSON(); return b }
	out = append(out, "{\n  \"serial\": "...)
	out = append(out, str(iss.Cert.Serial)...)
	out = append(out, ",\n  \"certificate\": "...)
	out = append(out, str(string(authority.EncodePEM(iss.Cert.DER)))...)
	out = append(out, ",\n  \"chain\": "...)
	out = append(out, c.chainJSON(iss.Chain)...)
	out = append(out, ",\n  \"not_before\": "...)
	out = append(out, tim(iss.Cert.NotBefore)...)
	out = append(out, ",\n  \"not_after\": "...)
	out = append(out, tim(iss.Cert.NotAfter)...)
	if iss.Cert.RenewedFrom != "" {
		out = append(out, ",\n  \"renewed_from\": "...)
		out = append(out, str(iss.Cert.RenewedFrom)...)
	}
	return append(out, "\n}\n"...)
}

// chainCache holds the last chains a Server answered, by their DER: an
// issuer's chain is the same for everything it signs.
type chainCache struct {
	mu      sync.Mutex
	entries map[string][]byte // DER of the chain, joined -> its JSON
}

// chainJSON is the chain as indented JSON: a list of PEM strings.
func (c *chainCache) chainJSON(ders [][]byte) []byte {
	key := string(bytes.Join(ders, nil))
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.entries[key]; ok {
		return b
	}
	var b []byte
	if len(ders) == 0 {
		b = []byte("[]")
	} else {
		b = []byte("[")
		for i, p := range pemList(ders) {
			if i > 0 {
				b = append(b, ',')
			}
			s, _ := json.Marshal(p)
			b = append(append(b, "\n    "...), s...)
		}
		b = append(b, "\n  ]"...)
	}
	if len(c.entries) >= 64 { // issuers come and go rarely
		c.entries = nil
	}
	if c.entries == nil {
		c.entries = map[string][]byte{}
	}
	c.entries[key] = b
	return b
}

// audiences are the URLs a self-minted token sent to path may name: path
// under each public URL, with and without an explicit default port (step-ca
// accepts both too). A token minted for another CA that shares a
// provisioner key names that CA's URL and is refused here.
func audiences(bases []string, path string) []string {
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, b := range bases {
		b = strings.TrimSuffix(b, "/")
		add(b + path)
		u, err := url.Parse(b)
		if err != nil {
			continue
		}
		switch u.Port() {
		case "443":
			u.Host = u.Hostname()
			if strings.Contains(u.Host, ":") {
				u.Host = "[" + u.Host + "]"
			}
			add(u.String() + path)
		case "":
			u.Host += ":443"
			add(u.String() + path)
		}
	}
	return out
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

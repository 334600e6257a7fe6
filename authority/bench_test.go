package authority

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"testing"
)

// BenchmarkSignWithToken is one enrollment on one node without the
// network: token lookup, CSR check, signing (soft key) and the FSM commit.
func BenchmarkSignWithToken(b *testing.B) {
	t := &testing.T{}
	c := newTestCA(t)
	csr := csrPEM(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{DNSNames: []string{"b.example"}})
	toks := make([]string, b.N)
	for i := range toks {
		toks[i] = c.token(t, "b.example")
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.signToken(context.Background(), csr, toks[i]); err != nil {
			b.Fatal(err)
		}
	}
}

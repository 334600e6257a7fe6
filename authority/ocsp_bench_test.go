package authority

import (
	"context"
	"crypto"
	"testing"
)

// BenchmarkOCSPCachedSingle is the hot path: one certificate whose answer
// is already signed and held in memory.
func BenchmarkOCSPCachedSingle(b *testing.B) {
	c := newTestCA(b)
	leaf, issuer := c.issued(b, "bench.example")
	req := ocspRequest(b, leaf.SerialNumber, issuer, crypto.SHA256)
	if _, err := c.OCSP(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.OCSP(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

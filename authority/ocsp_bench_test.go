package authority

import (
	"context"
	"crypto"
	"testing"

	"golang.org/x/time/rate"
)

// BenchmarkOCSPCachedSingle is the hot path: one certificate whose answer
// is already signed and held in memory.
func BenchmarkOCSPCachedSingle(b *testing.B) {
	c := newTestCA(b)
	leaf, issuer := c.issued(b, "bench.example")
	req := ocspRequest(b, leaf.SerialNumber, issuer, crypto.SHA256)
	if _, _, err := c.OCSP(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.OCSP(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOCSPThreeCertificates: a request for three certificates, signed
// for each request.
func BenchmarkOCSPThreeCertificates(b *testing.B) {
	c := newTestCA(b)
	a, issuer := c.issued(b, "a.example")
	bb, _ := c.issued(b, "b.example")
	cc, _ := c.issued(b, "c.example")
	req := ocspMultiRequest(b, issuer, crypto.SHA256, a.SerialNumber, bb.SerialNumber, cc.SerialNumber)
	c.ocspFreshSigs = rate.NewLimiter(rate.Inf, 1) // the cost of an answer, not the node's budget
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.OCSP(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

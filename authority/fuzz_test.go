package authority

import (
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
)

// FuzzParseCSR: any input is either refused as a bad CSR or yields names in
// canonical form.
func FuzzParseCSR(f *testing.F) {
	k := ecKey(&testing.T{}, elliptic.P256())
	f.Add(csrPEM(&testing.T{}, k, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "a.example"}, DNSNames: []string{"b.example"}}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := ParseCSR(b)
		if err != nil {
			if !errors.Is(err, ErrBadCSR) {
				t.Fatalf("error not marked as a bad CSR: %v", err)
			}
			return
		}
		names, err := csrNames(csr)
		if err != nil {
			if !errors.Is(err, ErrBadCSR) {
				t.Fatalf("error not marked as a bad CSR: %v", err)
			}
			return
		}
		for _, n := range names.all {
			if c, err := normalizeName(n); err != nil || c != n {
				t.Fatalf("name %q not canonical: %q %v", n, c, err)
			}
		}
	})
}

// FuzzNormalizeName: canonical forms are fixed points.
func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"Example.COM.", "*.a.b", "10.0.0.1", "::1", "spiffe://x/y", "a@b.c", "xn--bcher-kva.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := normalizeName(s)
		if err != nil {
			return
		}
		if c2, err := normalizeName(c); err != nil || c2 != c {
			t.Fatalf("%q -> %q -> %q, %v", s, c, c2, err)
		}
	})
}

// FuzzNormalizeSerial: accepted serials are canonical and round-trip.
func FuzzNormalizeSerial(f *testing.F) {
	for _, s := range []string{"00ab", "0a:bc", "ffffffffffffffffffffffffffffffffffffffff", "-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := NormalizeSerial(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("unmarked error %v", err)
			}
			return
		}
		if c2, err := NormalizeSerial(c); err != nil || c2 != c {
			t.Fatalf("%q -> %q -> %q", s, c, c2)
		}
	})
}

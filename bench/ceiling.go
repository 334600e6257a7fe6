package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// NewKey makes a key of a bench key type: ec256 (default) or rsa2048.
func NewKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "", "ec256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("key type %q: want ec256 or rsa2048", keyType)
}

// Ceiling measures, in this process on every core, what issuing a
// certificate from a CSR cannot avoid: parse the CSR, check its signature,
// and x509.CreateCertificate (which also verifies the signature it made)
// with a software key of the same type. No CA can issue faster on this
// machine; the other figures are read against it.
func Ceiling(ctx context.Context, d time.Duration, keyType string) (*Result, error) {
	caKey, err := NewKey(keyType)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench ceiling CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	var csrs [][]byte
	for i := range 64 {
		k, err := NewKey(keyType)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("device-%d.bench.example", i)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, k)
		if err != nil {
			return nil, err
		}
		csrs = append(csrs, der)
	}
	var failures atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	rec := newRecorder(start)
	var wg sync.WaitGroup
	for w := range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			limit := new(big.Int).Lsh(big.NewInt(1), 128)
			for i := w; ctx.Err() == nil; i++ {
				t0 := time.Now()
				csr, err := x509.ParseCertificateRequest(csrs[i%len(csrs)])
				if err == nil {
					err = csr.CheckSignature()
				}
				var serial *big.Int
				if err == nil {
					serial, err = rand.Int(rand.Reader, limit)
				}
				if err == nil {
					t := time.Now()
					_, err = x509.CreateCertificate(rand.Reader, &x509.Certificate{
						SerialNumber: serial, Subject: csr.Subject, DNSNames: csr.DNSNames,
						NotBefore: t.Add(-time.Minute), NotAfter: t.Add(24 * time.Hour),
						KeyUsage:    x509.KeyUsageDigitalSignature,
						ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
					}, ca, csr.PublicKey, caKey)
				}
				if err != nil {
					failures.Add(1)
					continue
				}
				rec.add(t0, time.Now(), "")
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failures.Load() > 0 {
		return nil, fmt.Errorf("ceiling: %d certificates failed", failures.Load())
	}
	kt := keyType
	if kt == "" {
		kt = "ec256"
	}
	res := &Result{Kind: "ceiling", Operation: "parse CSR + check signature + x509.CreateCertificate", KeyType: kt,
		Concurrency: runtime.GOMAXPROCS(0), Machine: thisMachine(), Started: start}
	// Latencies are one certificate's CPU time plus scheduling: the floor
	// under any CA's.
	rec.result(res, elapsed)
	return res, nil
}

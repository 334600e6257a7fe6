//go:build pkcs11 && cgo

package pkcs11_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/pkcs11/hsmtest"
)

func TestSoftHSMSignAndVerify(t *testing.T) {
	tok := hsmtest.New(t, "ca-token")
	c := &signer.Cache{Options: signer.Options{Concurrency: 4}}
	defer c.Close()
	ctx := context.Background()
	d := sha256.Sum256([]byte("hello"))
	for _, alg := range []string{signer.AlgECP256, signer.AlgECP384, signer.AlgRSA2048} {
		t.Run(alg, func(t *testing.T) {
			uri, err := c.Create(ctx, tok.KeyURI("key-"+alg), alg)
			if err != nil {
				t.Fatal(err)
			}
			k, err := c.Get(ctx, uri)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := signer.CryptoSigner(ctx, k).Sign(rand.Reader, d[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			switch pub := k.Public().(type) {
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(pub, d[:], sig) {
					t.Fatal("ECDSA signature does not verify")
				}
			case *rsa.PublicKey:
				if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig); err != nil {
					t.Fatal(err)
				}
			}
			if err := k.(signer.HealthChecker).Health(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSoftHSMConcurrencyCap(t *testing.T) {
	tok := hsmtest.New(t, "ca-token")
	c := &signer.Cache{Options: signer.Options{Concurrency: 3, MaxWait: 10 * time.Second}}
	defer c.Close()
	ctx := context.Background()
	uri, err := c.Create(ctx, tok.KeyURI("k"), signer.AlgECP256)
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.Get(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	var wg sync.WaitGroup
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := k.SignContext(ctx, d[:], crypto.SHA256); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if p := k.(interface{ Limiter() *signer.Limiter }).Limiter().Peak(); p > 3 {
		t.Fatalf("%d signatures in flight, cap 3", p)
	}
}

func TestPINNeverInline(t *testing.T) {
	c := &signer.Cache{}
	_, err := c.Get(context.Background(), "pkcs11:token=t;object=k;pin-value=1234?module-path=/x&pin-source=env:X")
	if !errors.Is(err, signer.ErrBadURI) {
		t.Fatalf("inline PIN: %v", err)
	}
}

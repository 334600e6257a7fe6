package awskms_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/awskms"
	"github.com/quorumca/quorumca/signer/awskms/kmstest"
)

func newKey(t *testing.T, kms *kmstest.Server, c *signer.Cache, alg string) signer.Key {
	t.Helper()
	ctx := context.Background()
	uri, err := c.Create(ctx, kms.KeyURI(""), alg)
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.Get(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignAndVerify(t *testing.T) {
	kms := kmstest.Start(t)
	c := &signer.Cache{}
	ctx := context.Background()
	msg := []byte("to be signed")
	for _, alg := range []string{signer.AlgECP256, signer.AlgECP384, signer.AlgRSA2048, signer.AlgRSA3072} {
		t.Run(alg, func(t *testing.T) {
			k := newKey(t, kms, c, alg)
			s := signer.CryptoSigner(ctx, k)
			switch pub := k.Public().(type) {
			case *ecdsa.PublicKey:
				h := crypto.SHA256
				if pub.Curve.Params().BitSize == 384 {
					h = crypto.SHA384
				}
				d := digest(h, msg)
				sig, err := s.Sign(rand.Reader, d, h)
				if err != nil {
					t.Fatal(err)
				}
				if !ecdsa.VerifyASN1(pub, d, sig) {
					t.Fatal("ECDSA signature does not verify")
				}
			case *rsa.PublicKey:
				// PKCS#1 v1.5: local-kms's PSS salt differs from AWS's.
				d := digest(crypto.SHA256, msg)
				sig, err := s.Sign(rand.Reader, d, crypto.SHA256)
				if err != nil {
					t.Fatal(err)
				}
				if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d, sig); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func digest(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return d[:]
	}
	d := sha256.Sum256(msg)
	return d[:]
}

// A burst of throttling is absorbed by retries, and while it lasts the
// concurrency cap halves instead of hammering KMS.
func TestThrottlingIsRetriedAndConcurrencyCapped(t *testing.T) {
	kms := kmstest.Start(t)
	const cap = 4
	c := &signer.Cache{Options: signer.Options{Concurrency: cap, MaxWait: 10 * time.Second}}
	k := newKey(t, kms, c, signer.AlgECP256)
	kms.ResetPeak()
	kms.Throttle(12)
	d := digest(crypto.SHA256, []byte("x"))
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			sig, err := k.SignContext(ctx, d, crypto.SHA256)
			if err == nil && !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d, sig) {
				err = errors.New("bad signature")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("sign under throttling: %v", err)
		}
	}
	if kms.Signs() < 40 {
		t.Errorf("KMS signed %d times, want 40", kms.Signs())
	}
	if p := kms.Peak(); p > cap {
		t.Errorf("%d requests in flight at KMS, cap %d", p, cap)
	}
	if l := k.(interface{ Limiter() *signer.Limiter }).Limiter(); l.Peak() > cap {
		t.Errorf("limiter peak %d, cap %d", l.Peak(), cap)
	}
}

// When the budget is spent the signer sheds load at once.
func TestOverloadIsShed(t *testing.T) {
	kms := kmstest.Start(t)
	c := &signer.Cache{Options: signer.Options{Concurrency: 8, Rate: 1, Burst: 1, MaxWait: 10 * time.Millisecond}}
	k := newKey(t, kms, c, signer.AlgECP256)
	d := digest(crypto.SHA256, []byte("x"))
	ctx := context.Background()
	if _, err := k.SignContext(ctx, d, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := k.SignContext(ctx, d, crypto.SHA256); !errors.Is(err, signer.ErrOverloaded) {
		t.Fatalf("over budget: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("shedding took %s", time.Since(start))
	}
}

// An unreachable KMS makes health fail and, after the first failure,
// signatures fail fast with ErrUnavailable instead of hanging.
func TestUnreachableFailsFast(t *testing.T) {
	kms := kmstest.Start(t)
	c := &signer.Cache{Options: signer.Options{Timeout: time.Second}}
	k := newKey(t, kms, c, signer.AlgECP256)
	ctx := context.Background()
	if err := k.(signer.HealthChecker).Health(ctx); err != nil {
		t.Fatalf("healthy key: %v", err)
	}
	kms.Close()
	d := digest(crypto.SHA256, []byte("x"))
	if _, err := k.SignContext(ctx, d, crypto.SHA256); !errors.Is(err, signer.ErrUnavailable) {
		t.Fatalf("sign with KMS down: %v", err)
	}
	start := time.Now()
	if _, err := k.SignContext(ctx, d, crypto.SHA256); !errors.Is(err, signer.ErrUnavailable) || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("second sign with KMS down: %v after %s", err, time.Since(start))
	}
}

func TestBadURIs(t *testing.T) {
	c := &signer.Cache{}
	for _, uri := range []string{"awskms:", "awskms:%zz?"} {
		if _, err := c.Get(context.Background(), uri); err == nil {
			t.Errorf("%q opened", uri)
		}
	}
	_ = awskms.Scheme
}

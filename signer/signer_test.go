package signer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"testing"

	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/soft"
)

func TestOpenByScheme(t *testing.T) {
	ctx := context.Background()
	for _, uri := range []string{"", "noscheme", ":x"} {
		if _, err := signer.Open(ctx, uri); !errors.Is(err, signer.ErrBadURI) {
			t.Errorf("%q: %v", uri, err)
		}
	}
	if _, err := signer.Open(ctx, "nokms:key"); !errors.Is(err, signer.ErrUnknownScheme) {
		t.Errorf("unknown scheme: %v", err)
	}
	if _, err := signer.Open(ctx, "softkey:"+filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Error("missing key file opened")
	}
}

func TestSoftKeySignsAndCacheShares(t *testing.T) {
	uri, _, err := soft.Generate(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var strict signer.Cache
	if _, err := strict.Get(ctx, uri); !errors.Is(err, signer.ErrInsecure) {
		t.Fatalf("software key opened without allowing it: %v", err)
	}
	cache := signer.Cache{AllowInsecure: true}
	defer cache.Close()
	k1, err := cache.Get(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := cache.Get(ctx, uri)
	if k1 != k2 || k1.URI() != uri {
		t.Error("cache opened the key twice")
	}
	digest := sha256.Sum256([]byte("hello"))
	sig, err := signer.CryptoSigner(ctx, k1).Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(k1.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Error("signature does not verify")
	}
	// A cancelled context stops a signature.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := k1.SignContext(cctx, digest[:], crypto.SHA256); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled sign: %v", err)
	}
	if err := cache.Health(ctx); err != nil {
		t.Error(err)
	}
}

//go:build pkcs11 && cgo

package pkcs11_test

//lint:file-ignore SA1019 SCEP clients encrypt with RSAES-PKCS1-v1_5 (deprecated in Go 1.26): these tests must too

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/pkcs11/hsmtest"
	"github.com/quorumca/quorumca/signer/signertest"
)

// An RSA key generated in the token decrypts (so it has CKA_DECRYPT), also
// behind the Cache's observer, and opens a PKCS#7 envelope as SCEP needs.
func TestSoftHSMDecrypt(t *testing.T) {
	tok := hsmtest.New(t, "ca-token")
	c := &signer.Cache{Observe: func(string, time.Duration, error) {}}
	defer c.Close()
	ctx := context.Background()
	uri, err := c.Create(ctx, tok.KeyURI("scep"), signer.AlgRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.Get(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := signer.CryptoDecrypter(ctx, k)
	if !ok {
		t.Fatal("an RSA PKCS#11 key cannot decrypt")
	}
	// OAEP with SHA-1: SoftHSM2 2.6 (Debian 12) refuses other OAEP hashes
	// with CKR_ARGUMENTS_BAD (softhsm/SoftHSMv2#474); the soft backend's
	// test covers OAEP-SHA256.
	signertest.CheckDecrypts(t, d, crypto.SHA1)

	t.Run("PKCS7", func(t *testing.T) { signertest.CheckEnvelope(t, ctx, k, d) })
}

// Decryptions take the key's budget like signatures: they show in its
// limiter and stay under its cap.
func TestSoftHSMDecryptConcurrencyCap(t *testing.T) {
	tok := hsmtest.New(t, "ca-token")
	c := &signer.Cache{Options: signer.Options{Concurrency: 3, MaxWait: 10 * time.Second}}
	defer c.Close()
	ctx := context.Background()
	uri, err := c.Create(ctx, tok.KeyURI("k"), signer.AlgRSA2048)
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.Get(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, k.Public().(*rsa.PublicKey), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := k.(signer.Decrypter).DecryptContext(ctx, ct, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if p := k.(interface{ Limiter() *signer.Limiter }).Limiter().Peak(); p < 1 || p > 3 {
		t.Fatalf("peak of %d decryptions in flight, want 1..3", p)
	}
}

// An EC key in the token does not offer decryption; asked anyway, it says why.
func TestSoftHSMECKeyCannotDecrypt(t *testing.T) {
	tok := hsmtest.New(t, "ca-token")
	c := &signer.Cache{}
	defer c.Close()
	ctx := context.Background()
	uri, err := c.Create(ctx, tok.KeyURI("ec"), signer.AlgECP256)
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.Get(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := signer.CryptoDecrypter(ctx, k); ok {
		t.Fatal("CryptoDecrypter accepted an EC key")
	}
	if _, err := k.(signer.Decrypter).DecryptContext(ctx, []byte("x"), nil); !errors.Is(err, signer.ErrCannotDecrypt) {
		t.Fatalf("EC decrypt: %v", err)
	}
}

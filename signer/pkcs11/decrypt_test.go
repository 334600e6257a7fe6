//go:build pkcs11 && cgo

package pkcs11_test

//lint:file-ignore SA1019 SCEP clients encrypt with RSAES-PKCS1-v1_5 (deprecated in Go 1.26): these tests must too

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
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
	pub := k.Public().(*rsa.PublicKey)
	msg := []byte("a content-encryption key")
	v15, err := rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
	if err != nil {
		t.Fatal(err)
	}
	// OAEP with SHA-1: SoftHSM2 2.6 (Debian 12) refuses other OAEP hashes
	// with CKR_ARGUMENTS_BAD (softhsm/SoftHSMv2#474); the soft backend's
	// test covers OAEP-SHA256.
	oaep1, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		ciphertext []byte
		opts       crypto.DecrypterOpts
	}{
		{"PKCS1v15/nil opts", v15, nil},
		{"PKCS1v15", v15, &rsa.PKCS1v15DecryptOptions{}},
		{"OAEP-SHA1", oaep1, &rsa.OAEPOptions{Hash: crypto.SHA1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := d.Decrypt(rand.Reader, c.ciphertext, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("decrypted %q", got)
			}
		})
	}
	bad := bytes.Clone(v15)
	bad[len(bad)-1] ^= 1
	if got, err := d.Decrypt(rand.Reader, bad, nil); err == nil {
		t.Errorf("a tampered ciphertext decrypted to %q", got)
	}

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

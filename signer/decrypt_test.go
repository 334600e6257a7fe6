package signer_test

//lint:file-ignore SA1019 SCEP clients encrypt with RSAES-PKCS1-v1_5 (deprecated in Go 1.26): these tests must too

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/signertest"
)

// An RSA soft key made through the Cache decrypts PKCS#1 v1.5 and OAEP,
// with and without the Cache's observer wrapped around it.
func TestSoftRSAKeyDecrypts(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		observe func(string, time.Duration, error)
	}{
		{"plain", nil},
		{"observed", func(string, time.Duration, error) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &signer.Cache{AllowInsecure: true, Observe: tc.observe}
			defer c.Close()
			path := filepath.Join(t.TempDir(), "rsa.pem")
			uri, err := c.Create(ctx, "softkey:"+path, signer.AlgRSA2048)
			if err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v, %v", fi.Mode(), err)
			}
			k, err := c.Get(ctx, uri)
			if err != nil {
				t.Fatal(err)
			}
			if n := k.Public().(*rsa.PublicKey).N.BitLen(); n != 2048 {
				t.Fatalf("%d-bit key", n)
			}
			d, ok := signer.CryptoDecrypter(ctx, k)
			if !ok {
				t.Fatal("an RSA soft key cannot decrypt")
			}
			signertest.CheckDecrypts(t, d, crypto.SHA256)
			signertest.CheckEnvelope(t, ctx, k, d)
		})
	}
}

// An EC soft key does not offer decryption; asked anyway, it says why.
func TestSoftECKeyCannotDecrypt(t *testing.T) {
	ctx := context.Background()
	c := &signer.Cache{AllowInsecure: true}
	defer c.Close()
	uri, err := c.Create(ctx, "softkey:"+filepath.Join(t.TempDir(), "ec.pem"), signer.AlgECP256)
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

func TestSoftCreateAlgorithms(t *testing.T) {
	ctx := context.Background()
	c := &signer.Cache{AllowInsecure: true}
	defer c.Close()
	dir := t.TempDir()
	uri, err := c.Create(ctx, "softkey:"+filepath.Join(dir, "rsa3072.pem"), signer.AlgRSA3072)
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.Get(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	if n := k.Public().(*rsa.PublicKey).N.BitLen(); n != 3072 {
		t.Fatalf("%d-bit key", n)
	}
	if _, err := c.Create(ctx, uri, signer.AlgRSA2048); err == nil {
		t.Error("create overwrote an existing key file")
	}
	if _, err := c.Create(ctx, "softkey:"+filepath.Join(dir, "p384.pem"), signer.AlgECP384); err == nil {
		t.Error("created an algorithm the soft backend does not offer")
	}
}

// A PKCS#1 file (openssl's traditional RSA form) opens and decrypts.
func TestSoftPKCS1KeyOpens(t *testing.T) {
	ctx := context.Background()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pkcs1.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := signer.Open(ctx, "softkey:"+path)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := signer.CryptoDecrypter(ctx, k)
	if !ok {
		t.Fatal("a PKCS#1 RSA key cannot decrypt")
	}
	signertest.CheckDecrypts(t, d, crypto.SHA256)
}

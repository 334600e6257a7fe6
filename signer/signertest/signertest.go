// Package signertest holds checks that the tests of several signer
// backends share.
package signertest

//lint:file-ignore SA1019 SCEP clients encrypt with RSAES-PKCS1-v1_5 (deprecated in Go 1.26): these checks must too

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // OAEP-SHA1 for SoftHSM2
	_ "crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/quorumca/quorumca/signer"
)

// CheckEnvelope opens a PKCS#7 envelope made for a certificate of k's key, as
// a SCEP request is.
func CheckEnvelope(t *testing.T, ctx context.Context, k signer.Key, d crypto.Decrypter) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "scep decrypter"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), signer.CryptoSigner(ctx, k))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("a PKCSReq's CSR would be here")
	env, err := pkcs7.Encrypt(content, []*x509.Certificate{cert})
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(env)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p7.Decrypt(cert, d)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("pkcs7 decrypted %q", got)
	}
}

// CheckDecrypts encrypts to d's public key in every way SCEP may (PKCS#1
// v1.5, and OAEP with oaepHash: SoftHSM2 2.6 takes SHA-1 only) and
// compares what d decrypts; a tampered ciphertext must not decrypt.
func CheckDecrypts(t *testing.T, d crypto.Decrypter, oaepHash crypto.Hash) {
	t.Helper()
	pub := d.Public().(*rsa.PublicKey)
	msg := []byte("a content-encryption key")
	v15, err := rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
	if err != nil {
		t.Fatal(err)
	}
	oaep, err := rsa.EncryptOAEP(oaepHash.New(), rand.Reader, pub, msg, nil)
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
		{"OAEP-" + oaepHash.String(), oaep, &rsa.OAEPOptions{Hash: oaepHash}},
	} {
		got, err := d.Decrypt(rand.Reader, c.ciphertext, c.opts)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		} else if !bytes.Equal(got, msg) {
			t.Errorf("%s: decrypted %q", c.name, got)
		}
	}
	bad := bytes.Clone(v15)
	bad[len(bad)-1] ^= 1
	if got, err := d.Decrypt(rand.Reader, bad, nil); err == nil {
		t.Errorf("a tampered ciphertext decrypted to %q", got)
	}
}

// Package signertest holds checks that the tests of several signer
// backends share.
package signertest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
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

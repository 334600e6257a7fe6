// Package soft is a signer backed by a private key in a PEM file. It exists
// for dev mode and tests only: a production node must never hold a raw CA key.
//
// URI form: softkey:/absolute/path/to/key.pem
package soft

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"github.com/quorumca/quorumca/signer"
)

// Scheme is the URI scheme of software keys.
const Scheme = "softkey"

func init() { signer.Register(Scheme, open, create, true) }

type key struct {
	uri string
	s   crypto.Signer
}

func open(_ context.Context, uri string, _ signer.Options) (signer.Key, error) {
	path := strings.TrimPrefix(uri, Scheme+":")
	if path == "" {
		return nil, fmt.Errorf("%w: %q names no file", signer.ErrBadURI, uri)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("softkey: %w", err)
	}
	s, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("softkey %s: %w", path, err)
	}
	return &key{uri: uri, s: s}, nil
}

func (k *key) Public() crypto.PublicKey { return k.s.Public() }
func (k *key) URI() string              { return k.uri }
func (k *key) Close() error             { return nil }

func (k *key) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return k.s.Sign(rand.Reader, digest, opts)
}

// DecryptContext decrypts with an RSA key (for SCEP envelopes).
func (k *key) DecryptContext(ctx context.Context, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rk, ok := k.s.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: softkey %s is %T, not RSA", signer.ErrCannotDecrypt, k.uri, k.s)
	}
	return rk.Decrypt(rand.Reader, ciphertext, opts)
}

// ParsePrivateKey reads a PKCS#8, SEC 1 or PKCS#1 PEM private key.
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	if blk.Type == "EC PRIVATE KEY" {
		return x509.ParseECPrivateKey(blk.Bytes)
	}
	if blk.Type == "RSA PRIVATE KEY" {
		return x509.ParsePKCS1PrivateKey(blk.Bytes)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key type %T cannot sign", k)
	}
	return s, nil
}

// create writes a new key to the file the URI names.
func create(_ context.Context, uri, alg string, _ signer.Options) (string, error) {
	path := strings.TrimPrefix(uri, Scheme+":")
	if _, err := os.Stat(path); err == nil {
		return "", fmt.Errorf("softkey: %s exists", path)
	}
	var k crypto.Signer
	var err error
	switch alg {
	case signer.AlgECP256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case signer.AlgRSA2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case signer.AlgRSA3072:
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return "", fmt.Errorf("softkey: unsupported algorithm %q (have %s, %s, %s)", alg,
			signer.AlgECP256, signer.AlgRSA2048, signer.AlgRSA3072)
	}
	if err != nil {
		return "", err
	}
	if err := write(path, k); err != nil {
		return "", err
	}
	return Scheme + ":" + path, nil
}

// Generate creates an ECDSA P-256 key, writes it to path (mode 0600) and
// returns its URI and signer.
func Generate(path string) (string, crypto.Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	if err := write(path, k); err != nil {
		return "", nil, err
	}
	return Scheme + ":" + path, k, nil
}

// write stores k as a PKCS#8 PEM file readable by its owner only.
func write(path string, k crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

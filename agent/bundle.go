package agent

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/quorumca/quorumca/internal/atomicfile"
)

// Bundle is what a device needs to enroll, in one file: where the CA is,
// how to recognise it, the single-use token and the names to ask for.
// `quorumca token create -bundle-dir` writes them.
type Bundle struct {
	Addrs []string `json:"addrs"` // https://host:port of nodes or of the load balancer
	// Roots (PEM) verify the CA's API certificate. Or RootFingerprint, the
	// SHA-256 of one root's DER (hex, colons allowed): the agent fetches
	// /v1/roots and keeps them once that root verifies the CA.
	Roots           string `json:"roots,omitempty"`
	RootFingerprint string `json:"root_fingerprint,omitempty"`
	Token           string `json:"token,omitempty"` // removed once used
	// Provisioner: the x5c provisioner a device without a token enrolls
	// with, by its factory certificate (Config.BootstrapCert).
	Provisioner string   `json:"provisioner,omitempty"`
	Names       []string `json:"names"` // the first is also the subject's common name
}

// maxBundle bounds a bundle file; real ones are a few KB.
const maxBundle = 1 << 20

// ReadBundle reads and checks a bundle file.
func ReadBundle(path string) (*Bundle, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxBundle {
		return nil, fmt.Errorf("bundle %s: larger than %d bytes", path, maxBundle)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseBundle(data)
}

// ParseBundle decodes and checks a bundle.
func ParseBundle(data []byte) (*Bundle, error) {
	var b Bundle
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return &b, b.check()
}

func (b *Bundle) check() error {
	if len(b.Addrs) == 0 {
		return errors.New("bundle: no addrs")
	}
	for _, a := range b.Addrs {
		u, err := url.Parse(a)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("bundle: address %q: want https://host:port", a)
		}
	}
	if b.Roots == "" && b.RootFingerprint == "" {
		return errors.New("bundle: needs roots or root_fingerprint")
	}
	if b.Roots != "" {
		if _, err := parseCerts([]byte(b.Roots)); err != nil {
			return fmt.Errorf("bundle: roots: %w", err)
		}
	}
	if b.RootFingerprint != "" {
		if _, err := b.fingerprint(); err != nil {
			return err
		}
	}
	for _, n := range b.Names {
		if n == "" || len(n) > 253 || strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fmt.Errorf("bundle: bad name %q", n)
		}
	}
	return nil
}

func (b *Bundle) fingerprint() ([]byte, error) {
	fp, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(b.RootFingerprint), ":", ""))
	if err != nil || len(fp) != sha256.Size {
		return nil, errors.New("bundle: root_fingerprint must be a SHA-256 in hex")
	}
	return fp, nil
}

// Fingerprint is the SHA-256 of a certificate's DER, in hex.
func Fingerprint(c *x509.Certificate) string {
	h := sha256.Sum256(c.Raw)
	return hex.EncodeToString(h[:])
}

// Write stores the bundle (mode 0600: it may hold a token).
func (b *Bundle) Write(path string) error {
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}

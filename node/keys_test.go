package node

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// assertNoPrivateKeys scans every file under each node's data dir for a
// private key in PEM, PKCS#8 or raw DER (PKCS#1, SEC 1) form, at every
// offset where a DER SEQUENCE could start.
func assertNoPrivateKeys(t *testing.T, c *testCluster) {
	t.Helper()
	files, bytesScanned := 0, 0
	for _, tn := range c.nodes {
		err := filepath.WalkDir(tn.cfg.DataDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			bytesScanned += len(b)
			if what := findPrivateKey(b); what != "" {
				t.Errorf("%s holds a private key (%s)", path, what)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files == 0 {
		t.Fatal("no files scanned")
	}
	t.Logf("scanned %d files, %d bytes: no private key", files, bytesScanned)
}

func findPrivateKey(b []byte) string {
	if bytes.Contains(b, []byte("PRIVATE KEY-----")) {
		return "PEM"
	}
	for i := 0; i < len(b)-2; i++ {
		if b[i] != 0x30 || (b[i+1] != 0x82 && b[i+1] != 0x81 && b[i+1] >= 0x80) {
			continue
		}
		if what := parsesAsKey(b[i:]); what != "" {
			return what
		}
	}
	return ""
}

func parsesAsKey(b []byte) string {
	if k, err := x509.ParsePKCS8PrivateKey(b); err == nil {
		switch k.(type) {
		case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
			return "PKCS#8 DER"
		}
	}
	if _, err := x509.ParseECPrivateKey(b); err == nil {
		return "SEC 1 DER"
	}
	if _, err := x509.ParsePKCS1PrivateKey(b); err == nil {
		return "PKCS#1 DER"
	}
	return ""
}

// The scanner itself finds keys in every form it looks for.
func TestKeyScannerFindsKeys(t *testing.T) {
	k := newKey(t).(*ecdsa.PrivateKey)
	p8, _ := x509.MarshalPKCS8PrivateKey(k)
	sec1, _ := x509.MarshalECPrivateKey(k)
	for name, b := range map[string][]byte{
		"PEM":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
		"PKCS#8": append([]byte("junk before"), append(p8, []byte("junk after")...)...),
		"SEC 1":  append(bytes.Repeat([]byte{0x30}, 7), sec1...),
	} {
		if findPrivateKey(b) == "" {
			t.Errorf("%s key not found", name)
		}
	}
	if what := findPrivateKey([]byte(strings.Repeat("0\x82 no keys here ", 100))); what != "" {
		t.Errorf("false positive: %s", what)
	}
}

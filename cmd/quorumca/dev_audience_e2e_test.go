//go:build !agent

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/internal/testwait"
)

// The audiences quorumca dev accepts in self-minted tokens follow this
// start's -listen: restarted on another port with the same data dir, it
// refuses a token for the old address and accepts one for the new.
func TestDevTokenAudienceFollowsListen(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: key.Public()})
	devAt := func(base int) *proc {
		p := start(t, "dev", "-data-dir", dir, "-listen", fmt.Sprintf("127.0.0.1:%d", base))
		testwait.For(t, 60*time.Second, "the dev banner", func() bool { return strings.Contains(p.out.String(), "Press Ctrl-C") })
		return p
	}
	sign := func(base int, aud, jti string) int {
		t.Helper()
		tok, err := authority.SignJWT(key, "", nil, map[string]any{"iss": "auto", "aud": aud, "jti": jti, "sans": []string{"j.example"},
			"exp": time.Now().Add(time.Minute).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"j.example"}}, k)
		csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		c := httpsClient(t, filepath.Join(dir, "root.pem"))
		var out map[string]any
		return postJSON(t, c, fmt.Sprintf("https://127.0.0.1:%d/v1/sign", base), "", map[string]string{"csr": string(csr), "token": tok}, &out)
	}

	first := freeBase(t, 1)
	p := devAt(first)
	admin, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	prov := map[string]any{"name": "auto", "kind": "jwk", "authority": "default", "jwk": json.RawMessage(jwk),
		"policy": map[string]any{"dns": []string{"*"}}}
	if st := postJSON(t, httpsClient(t, filepath.Join(dir, "root.pem")), fmt.Sprintf("https://127.0.0.1:%d/v1/admin/provisioners", first),
		strings.TrimSpace(string(admin)), prov, nil); st != 201 {
		t.Fatalf("create jwk provisioner: %d", st)
	}
	if st := sign(first, fmt.Sprintf("https://localhost:%d/v1/sign", first), "1"); st != 201 {
		t.Fatalf("token for localhost at -listen's port: %d", st)
	}
	p.stop(t)

	second := freeBase(t, 1)
	for second == first {
		second = freeBase(t, 1)
	}
	p = devAt(second)
	if st := sign(second, fmt.Sprintf("https://127.0.0.1:%d/v1/sign", first), "2"); st != 401 {
		t.Errorf("token for the previous -listen: %d, want 401", st)
	}
	if st := sign(second, fmt.Sprintf("https://127.0.0.1:%d/v1/sign", second), "3"); st != 201 {
		t.Errorf("token for the current -listen: %d, want 201", st)
	}
	p.stop(t)
}

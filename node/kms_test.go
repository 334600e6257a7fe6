package node

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/internal/testwait"
	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/awskms/kmstest"
)

// createAuthority asks tn's admin API for an authority with root and issuing
// keys created at the given URIs (P-256 unless alg names another).
func (c *testCluster) createAuthority(tn *testNode, name, rootKey, key string, alg ...string) {
	c.t.Helper()
	body := map[string]any{
		"name": name, "root_key": rootKey, "key": key, "create_keys": true,
		"base_url": "http://" + c.nodes[0].cfg.HTTPListen,
	}
	if len(alg) > 0 {
		body["key_algorithm"] = alg[0]
	}
	r := c.do(tn, "POST", "/v1/admin/authorities", body, c.admin)
	if r.status != http.StatusCreated {
		c.t.Fatalf("create authority: %d %s", r.status, r.body)
	}
	c.WaitConverged()
}

// A cluster whose authority lives in KMS (local-kms): issuance through
// every node, chains that openssl verifies, no private key on any disk.
func TestKMSBackedCluster(t *testing.T) {
	requireOpenSSL(t)
	t.Run("RSA", func(t *testing.T) {
		// RSA keys sign PKCS#1 v1.5 (local-kms's PSS salt differs from AWS's).
		kms := kmstest.Start(t)
		c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) { c.noDefaultAuthority = true })
		c.createAuthority(c.Followers()[0], "kms", kms.KeyURI(""), kms.KeyURI(""), "RSA_2048")
		opensslVerifiesAll(t, c)
	})
	kms := kmstest.Start(t)
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) { c.noDefaultAuthority = true })
	c.createAuthority(c.Followers()[0], "kms", kms.KeyURI(""), kms.KeyURI(""))
	opensslVerifiesAll(t, c)

	// Revocation and renewal sign CRLs and certificates in KMS too.
	h := c.enrollHolder(c.nodes[1], "renew.example")
	if r := c.mtls(h, c.nodes[2], "POST", "/v1/renew", nil, ""); r.status != http.StatusCreated {
		t.Fatalf("renew: %d %s", r.status, r.body)
	}
	if r := c.do(c.nodes[0], "POST", "/v1/revoke", map[string]string{"serial": h.s.Serial}, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if kms.Signs() == 0 {
		t.Fatal("nothing was signed in KMS")
	}
	assertNoPrivateKeys(t, c)

	// KMS goes away: requests fail fast with a clear error, and every node
	// stops reporting ready.
	kms.Close()
	tok := c.mintToken(c.nodes[0], "1h", "down.example")
	start := time.Now()
	r := c.do(c.nodes[0], "POST", "/v1/sign", map[string]string{"csr": string(newCSR(t, newKey(t), "down.example")), "token": tok}, "")
	if r.status != http.StatusServiceUnavailable || r.errorCode() != "signer_unavailable" || r.header.Get("Retry-After") == "" {
		t.Errorf("sign with KMS down: %d %s", r.status, r.body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("sign with KMS down took %s", d)
	}
	for _, tn := range c.nodes {
		testwait.For(t, 20*time.Second, tn.cfg.NodeName+" to report not ready", func() bool {
			return c.do(tn, "GET", "/v1/ready", nil, "").status == http.StatusServiceUnavailable
		})
	}
}

// opensslVerifiesAll enrolls through every node and has openssl verify each
// certificate against the "kms" authority's root.
func opensslVerifiesAll(t *testing.T, c *testCluster) {
	t.Helper()
	var roots struct{ Roots []string }
	c.do(c.nodes[0], "GET", "/v1/authorities/kms/roots", nil, "").decode(t, &roots)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.pem"), []byte(roots.Roots[0]), 0o600)
	for i, tn := range c.nodes {
		h := c.enrollHolder(tn, "kms"+string(rune('a'+i))+".example")
		os.WriteFile(filepath.Join(dir, "inter.pem"), []byte(h.s.Chain[0]), 0o600)
		os.WriteFile(filepath.Join(dir, "leaf.pem"), []byte(h.s.Certificate), 0o600)
		if out, err := openssl(t, dir, "verify", "-CAfile", "root.pem", "-untrusted", "inter.pem", "leaf.pem"); err != nil ||
			!strings.Contains(out, "leaf.pem: OK") {
			t.Fatalf("openssl verify of a KMS-signed certificate from %s: %v\n%s", tn.cfg.NodeName, err, out)
		}
	}
}

// With its signing budget spent, a node sheds load: 429 with Retry-After.
func TestSigningBudgetShedsLoad(t *testing.T) {
	kms := kmstest.Start(t)
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.noDefaultAuthority = true
		c.signer = signer.Options{Rate: 0.5, Burst: 4, MaxWait: 20 * time.Millisecond}
	})
	n := c.nodes[0]
	c.createAuthority(n, "kms", kms.KeyURI(""), kms.KeyURI("")) // spends the burst: root, intermediate, CRL
	shed := 0
	for i := range 4 {
		name := "b" + string(rune('a'+i)) + ".example"
		r := c.do(n, "POST", "/v1/sign", map[string]string{"csr": string(newCSR(t, newKey(t), name)), "token": c.mintToken(n, "1h", name)}, "")
		switch {
		case r.status == http.StatusCreated:
		case r.status == http.StatusTooManyRequests && r.errorCode() == "overloaded" && r.header.Get("Retry-After") != "":
			shed++
		default:
			t.Fatalf("unexpected %d %s", r.status, r.body)
		}
	}
	if shed == 0 {
		t.Fatal("no request was shed with the budget spent")
	}
}

//go:build pkcs11 && cgo

package node

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quorumca/quorumca/agent"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/pkcs11/hsmtest"
)

// A cluster whose authority lives in a PKCS#11 token (SoftHSM2).
func TestPKCS11BackedCluster(t *testing.T) {
	tok := hsmtest.New(t, "ca-token")
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) { c.noDefaultAuthority = true })
	c.createAuthority(c.nodes[1], "hsm", tok.KeyURI("root"), tok.KeyURI("issuing"))
	for _, tn := range c.nodes {
		h := c.enrollHolder(tn, "hsm-"+tn.cfg.NodeName+".example")
		if h.chain[0].Subject.CommonName != "hsm issuing CA" {
			t.Errorf("issued by %s", h.chain[0].Subject)
		}
	}
	h := c.enrollHolder(c.nodes[0], "revoke.example")
	if r := c.do(c.nodes[2], "POST", "/v1/revoke", map[string]string{"serial": h.s.Serial}, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	assertNoPrivateKeys(t, c)
}

// A SCEP RA whose RSA key lives in a PKCS#11 token: every node decrypts
// requests and signs replies with it, and no node holds it.
func TestSCEPRAInPKCS11(t *testing.T) {
	tok := hsmtest.New(t, "ra-token")
	c := newTestClusterWith(t, 3, cluster.FastTiming(), nil)
	c.waitLogFormat()
	r := c.do(c.nodes[0], "PUT", "/v1/admin/authorities/default/scep-ra", map[string]any{"key": tok.KeyURI("scep-ra"), "create_keys": true}, c.admin)
	if r.status != http.StatusOK {
		t.Fatalf("scep-ra: %d %s", r.status, r.body)
	}
	for i, tn := range c.nodes {
		name := fmt.Sprintf("scep-hsm%d.example", i)
		if cert := scepEnroll(t, c.client, tn, c.mintToken(c.nodes[0], "1h", name), name); cert.DNSNames[0] != name {
			t.Fatalf("issued %v", cert.DNSNames)
		}
	}
	assertNoPrivateKeys(t, c)
}

// A device whose factory key lives in a secure element (SoftHSM2 here)
// enrolls through the agent with -bootstrap-key pkcs11:...: the key signs
// the TLS handshake and never leaves the token.
func TestAgentFactoryKeyInPKCS11(t *testing.T) {
	tok := hsmtest.New(t, "secure-element")
	c, proxy := agentCluster(t, time.Hour)
	c.waitLogFormat()
	acme := newManufacturer(t, "Acme Locks")
	c.x5cProvisioner(c.nodes[0], "locks", acme, false)
	ctx := context.Background()
	keys := &signer.Cache{}
	defer keys.Close()
	uri, err := keys.Create(ctx, tok.KeyURI("idevid"), signer.AlgECP256)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.Get(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	id := acme.device(t, "L-42", signer.CryptoSigner(ctx, k))
	var certs []byte
	for _, der := range id.Certificate {
		certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	certFile := filepath.Join(t.TempDir(), "idevid.pem")
	if err := os.WriteFile(certFile, certs, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := c.factoryAgentConfig(proxy.URL(), "locks", certFile, uri)
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Check(ctx); err != nil {
		t.Fatalf("enroll with the secure element's key: %v", err)
	}
	leaf, err := checkAgentFiles(cfg)
	if err != nil || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "l-42.devices.example" {
		t.Fatalf("enrolled %v (%v)", leaf, err)
	}
}

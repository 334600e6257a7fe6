//go:build pkcs11 && cgo

package node

import (
	"net/http"
	"testing"

	"github.com/quorumca/quorumca/cluster"
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

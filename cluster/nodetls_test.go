package cluster

import (
	"context"
	"crypto/x509"
	"testing"

	"github.com/quorumca/quorumca/signer"
)

func testNodeTLS(t *testing.T, name string) (*nodeTLS, signer.Key) {
	t.Helper()
	key := testCAKey(t, t.TempDir())
	n := &nodeTLS{id: name, ttl: defaultNodeCertTTL, ready: make(chan struct{})}
	if err := n.adoptKey(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	return n, key
}

func nodeCert(t *testing.T, n *nodeTLS) *x509.Certificate {
	t.Helper()
	k, err := newNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := n.issue(context.Background(), n.id, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Verified node certificates are remembered, but only under the anchor
// that verified them.
func TestVerifiedNodeCertificatesAreRememberedPerAnchor(t *testing.T) {
	a, _ := testNodeTLS(t, "a")
	b, bKey := testNodeTLS(t, "b")
	fromA := nodeCert(t, a)
	for range 2 { // the second answer comes from the cache
		if err := a.verify(fromA); err != nil {
			t.Fatalf("own cluster's certificate refused: %v", err)
		}
	}
	if len(a.verified) != 1 {
		t.Fatalf("%d certificates remembered, want 1", len(a.verified))
	}
	if err := b.verify(fromA); err == nil {
		t.Fatal("another cluster's certificate accepted")
	}
	// Re-anchored: what the old anchor verified no longer counts.
	bCA, err := caCert(context.Background(), bKey)
	if err != nil {
		t.Fatal(err)
	}
	a.setAnchor(bCA)
	if err := a.verify(fromA); err == nil {
		t.Fatal("a certificate of the old anchor accepted from the cache")
	}
	if err := a.verify(nodeCert(t, b)); err != nil {
		t.Fatalf("certificate of the new anchor refused: %v", err)
	}
}

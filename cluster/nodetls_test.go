package cluster

import (
	"context"
	"crypto/x509"
	"net"
	"sync/atomic"
	"testing"
	"time"

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

// A Raft connection from a node that is then removed stops being heard:
// the next read after the recheck interval fails and closes it. So does
// one whose certificate expired. A certificate issued in the second of
// the removal still counts as issued after it.
func TestRaftConnectionsOfRemovedNodesAreDropped(t *testing.T) {
	n, _ := testNodeTLS(t, "a")
	var removed atomic.Pointer[time.Time]
	n.removedAt = func(id string) time.Time {
		if at := removed.Load(); at != nil && id == "a" {
			return *at
		}
		return time.Time{}
	}
	leaf := nodeCert(t, n)
	server, client := net.Pipe()
	defer client.Close()
	pc := &peerConn{Conn: server, leaf: leaf, tls: n}
	pc.checked.Store(time.Now().UnixNano())
	go client.Write([]byte("x"))
	if _, err := pc.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read from a member: %v", err)
	}
	at := time.Now()
	removed.Store(&at)
	pc.checked.Store(at.Add(-2 * peerRecheck).UnixNano()) // the last check was a while ago
	go client.Write([]byte("y"))
	if _, err := pc.Read(make([]byte, 1)); err == nil {
		t.Fatal("read from a removed node's connection")
	}
	if _, err := client.Write([]byte("z")); err == nil {
		t.Fatal("the removed node's connection stayed open")
	}
	if err := n.verify(nodeCert(t, n)); err != nil {
		t.Fatalf("a certificate issued after the removal (in its second) is refused: %v", err)
	}
}

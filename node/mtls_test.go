package node

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/internal/testwait"
)

// Raft and the internal RPC take only peers with a node certificate of the
// cluster CA.
func TestPeersWithoutNodeCertificateAreRefused(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.Leader()
	raftAddr := leader.node.Cluster().RaftAddr()

	// No certificate: the handshake fails and nothing reaches Raft.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", raftAddr, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write([]byte{0}) // an AppendEntries would start like this
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a peer without a node certificate got an answer from Raft")
	}
	// A certificate of another CA: refused too.
	other := otherCAHolder(t, leader.node.Cluster().NodeCert())
	conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", raftAddr, &tls.Config{InsecureSkipVerify: true,
		Certificates: []tls.Certificate{{Certificate: [][]byte{other.cert.Raw}, PrivateKey: other.key}}})
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write([]byte{0})
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a peer with a foreign certificate got an answer from Raft")
	}
	// Plain TCP: refused by the TLS layer.
	raw, err := net.DialTimeout("tcp", raftAddr, 5*time.Second)
	if err == nil {
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		raw.Write([]byte{0, 1, 2, 3})
		b, _ := io.ReadAll(raw)
		raw.Close()
		if len(b) > 0 && b[0] != 0x15 { // anything but a TLS alert
			t.Fatalf("plain TCP to Raft got %q", b)
		}
	}

	// The internal RPC: the join secret alone reads nothing.
	r := c.do(leader, "POST", "/v1/internal/index", []byte("{}"), c.secret)
	if r.status != http.StatusForbidden {
		t.Fatalf("internal RPC with the secret but no node certificate: %d %s", r.status, r.body)
	}
}

// A node that cannot use the cluster CA key proves the join secret to a
// member, gets its node certificate, joins, and serves; with a wrong secret
// it gets nothing and stays out.
func TestJoinWithSecretWhenTheKeyIsOutOfReach(t *testing.T) {
	c := newTestCluster(t, 2)
	n3 := c.addNodeWith(func(cfg *Config) { cfg.ClusterCAKey = "softkey:/nonexistent/cluster-ca.key" })
	testwait.For(t, 20*time.Second, "the node without the key to join", func() bool {
		servers, _ := c.Leader().node.Cluster().Servers()
		return len(servers) == 3 && n3.node.Cluster().NodeCert() != nil
	})
	c.WaitConverged()
	c.enrollHolder(n3, "keyless-node.example")

	bad := c.addNodeWith(func(cfg *Config) {
		cfg.ClusterCAKey = "softkey:/nonexistent/cluster-ca.key"
		cfg.JoinSecret = "not-the-cluster-secret-0123456789"
	})
	// Joined or not, judge after the good node has had time to join: add
	// another good one and wait for it.
	good := c.addNodeWith(func(cfg *Config) { cfg.ClusterCAKey = "softkey:/nonexistent/cluster-ca.key" })
	testwait.For(t, 20*time.Second, "another keyless node to join", func() bool {
		servers, _ := c.Leader().node.Cluster().Servers()
		return len(servers) == 4 && good.node.Cluster().NodeCert() != nil
	})
	if bad.node.Cluster().NodeCert() != nil {
		t.Error("a node with the wrong secret got a node certificate")
	}
	servers, _ := c.Leader().node.Cluster().Servers()
	for _, s := range servers {
		if strings.EqualFold(string(s.ID), bad.cfg.NodeName) {
			t.Error("a node with the wrong secret joined")
		}
	}
}

// Node certificates renew themselves before they expire, and the cluster
// carries on.
func TestNodeCertificatesRenew(t *testing.T) {
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) { c.nodeCertTTL = 6 * time.Second })
	first := map[string]string{}
	var firstExpiry time.Time
	for _, tn := range c.nodes {
		cert := tn.node.Cluster().NodeCert()
		first[tn.cfg.NodeName] = cert.SerialNumber.String()
		if cert.NotAfter.After(firstExpiry) {
			firstExpiry = cert.NotAfter
		}
	}
	testwait.For(t, 20*time.Second, "every node to renew its certificate", func() bool {
		for _, tn := range c.nodes {
			if tn.node.Cluster().NodeCert().SerialNumber.String() == first[tn.cfg.NodeName] {
				return false
			}
		}
		return true
	})
	// Past the first certificates' expiry, Raft and forwarding still work.
	testwait.For(t, 10*time.Second, "the first certificates to expire", func() bool { return time.Now().After(firstExpiry) })
	c.enrollHolder(c.Followers()[0], "after-renewal.example")
}

// A cluster whose CA key is out of reach when its first node starts (its
// KMS comes up later) forms once the key is back: the node tries the key
// again instead of waiting forever for a member in the same position.
func TestClusterFormsWhenTheKeyComesBack(t *testing.T) {
	restored := make(chan error, 1)
	c := newTestClusterWith(t, 2, cluster.FastTiming(), func(c *testCluster) {
		// The key lives where nothing is yet, until the first node has
		// started without it (its raft directory exists only after it
		// tried the key).
		src := strings.TrimPrefix(c.clusterCAKey(), "softkey:")
		kms := filepath.Join(c.dir, "kms")
		c.clusterCAKeyURI = "softkey:" + filepath.Join(kms, "cluster-ca.key")
		go func() {
			raftDir := filepath.Join(c.dir, "n1", "raft")
			deadline := time.Now().Add(30 * time.Second)
			for {
				if _, err := os.Stat(raftDir); err == nil {
					err = os.Mkdir(kms, 0o700)
					if err == nil {
						err = os.Rename(src, filepath.Join(kms, "cluster-ca.key"))
					}
					restored <- err
					return
				}
				if time.Now().After(deadline) {
					restored <- errors.New("the first node never started")
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	})
	if err := <-restored; err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		if n.node.Cluster().NodeCert() == nil {
			t.Errorf("%s has no node certificate", n.cfg.NodeName)
		}
	}
	c.enrollHolder(c.nodes[1], "key-came-back.example")
}

package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// An operator removes a node that joined with the join secret. What it
// had stops working at once, even in hands that keep its key: its
// certificate no longer writes to the log, renews, joins again or
// completes a Raft handshake. A node started again under that id gets a
// fresh certificate with the secret and joins as before.
func TestRemovedNodeIsShutOut(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, leaderFSM, leaderAPI := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	join := []string{"https://" + leaderAPI.addr}
	keyless := func(c *Config) { c.CAKey = nil }
	ghost, _, _ := u.memberWith("ghost", false, join, nil, keyless)
	testwait.For(t, 20*time.Second, "the keyless node to join", func() bool {
		return leader.isServer("ghost") && ghost.NodeCert() != nil && leader.logFormat() == fsm.LogFormat
	})
	had, _ := ghost.tls.current() // what whoever controls the node keeps

	if err := leader.RemovePeer(context.Background(), "ghost"); err != nil {
		t.Fatal(err)
	}
	if n, err := leaderFSM.Node("ghost"); err != nil || n.RemovedAt.IsZero() {
		t.Fatalf("the node table does not record the removal: %v %+v", err, n)
	}
	ghost.Shutdown()

	client := &http.Client{Timeout: 10 * time.Second, Transport: newRPCHTTPTransport(leader.tls.rpcClientConfig(), had)}
	post := func(path string, body any) int {
		b, ok := body.([]byte)
		if !ok {
			b, _ = json.Marshal(body)
		}
		resp, err := client.Post("https://"+leaderAPI.addr+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	env, _ := fsm.NewEnvelope(fsm.CmdNodeUpsert, "", fsm.Node{ID: "ghost", APIAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"})
	data, _ := env.Encode()
	if code := post(pathApplyBatch, fsm.EncodeBatch([][]byte{data})); code != http.StatusForbidden {
		t.Errorf("a write with the removed node's certificate: %d, want 403", code)
	}
	key, _ := newNodeKey()
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ghost"}}, key)
	if code := post(pathNodeCert, nodeCertRequest{ID: "ghost", CSR: csr}); code != http.StatusForbidden {
		t.Errorf("renewing the removed node's certificate: %d, want 403", code)
	}
	if code := post(pathJoin, joinRequest{ID: "ghost", RaftAddr: "127.0.0.1:2"}); code != http.StatusForbidden {
		t.Errorf("joining again with the removed node's certificate: %d, want 403", code)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", leader.RaftAddr(), ghost.tls.clientConfigWith(had))
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write([]byte{0})
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Error("Raft answered the removed node's certificate")
	}
	if leader.isServer("ghost") {
		t.Fatal("the removed node is back in the configuration")
	}

	again, _, _ := u.memberWith("ghost", false, join, nil, keyless)
	testwait.For(t, 20*time.Second, "the node started again under that id to join", func() bool {
		return leader.isServer("ghost") && again.NodeCert() != nil
	})
}

// Another node's certificate does not let a node join under that id.
func TestNodeJoinsOnlyAsItself(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, _, leaderAPI := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	other, _, _ := u.member("other", false, []string{"https://" + leaderAPI.addr}, nil)
	testwait.For(t, 20*time.Second, "the other node to join", func() bool { return leader.isServer("other") })
	// A node that is no member, with a valid node certificate.
	key, _ := newNodeKey()
	der, err := leader.tls.issue(context.Background(), "outsider", key.Public())
	if err != nil {
		t.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	client := &http.Client{Timeout: 10 * time.Second, Transport: newRPCHTTPTransport(other.tls.rpcClientConfig(), cert)}
	b, _ := json.Marshal(joinRequest{ID: "someone-else", RaftAddr: "127.0.0.1:2"})
	resp, err := client.Post("https://"+leaderAPI.addr+pathJoin, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || leader.isServer("someone-else") {
		t.Fatalf("a node joined under another id: %d", resp.StatusCode)
	}
}

// A node certificate lets a node write any command, but not stop the
// cluster: an unknown command is refused before it is proposed, and an
// undecodable payload is refused by every node alike.
func TestGarbageFromANodeDoesNotStopTheCluster(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, leaderFSM, leaderAPI := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	key, _ := newNodeKey()
	der, err := leader.tls.issue(context.Background(), "outsider", key.Public())
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: newRPCHTTPTransport(leader.tls.rpcClientConfig(),
		&tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})}
	for body, want := range map[string]int{
		`{}`:                                http.StatusBadRequest, // command 0
		`{"t":5,"v":99,"p":{}}`:             http.StatusBadRequest, // a version no node knows
		`{"t":5,"v":1,"p":"x"}`:             http.StatusConflict,   // undecodable: refused by the FSM
		`{"t":2,"v":1,"p":{"id":[1,2,3]}}`:  http.StatusBadRequest, // an announcement the leader checks first
		`{"t":65535,"v":1,"p":{"id":"x"}}`:  http.StatusBadRequest,
		`{"t":9,"v":1,"p":{"serial":true}}`: http.StatusConflict,
	} {
		resp, err := client.Post("https://"+leaderAPI.addr+pathApply, "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", body, resp.StatusCode, want)
		}
	}
	if err := leader.Barrier(context.Background()); err != nil || leaderFSM.AppliedIndex() == 0 {
		t.Fatalf("the leader after garbage: %v", err)
	}
}

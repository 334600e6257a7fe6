package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/freeport"
	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/soft"
)

// apiServer is a member's HTTPS API port, serving only the internal RPC.
type apiServer struct {
	addr    string
	handler atomic.Pointer[http.Handler]
}

func startAPI(t *testing.T, cert tls.Certificate) *apiServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &apiServer{addr: ln.Addr().String()}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h := s.handler.Load(); h != nil {
				(*h).ServeHTTP(w, r)
				return
			}
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert},
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return s
}

// apiTLS makes a self-signed server certificate for 127.0.0.1 and the
// client configuration that trusts it.
func apiTLS(t *testing.T) (tls.Certificate, *tls.Config) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: leaf}, &tls.Config{RootCAs: pool}
}

// A follower forwarding to a leader that predates batched forwarding (a
// rolling upgrade, followers first) falls back to one RPC per write.
func TestForwardingToALeaderWithoutBatches(t *testing.T) {
	dir := t.TempDir()
	key := testCAKey(t, dir)
	cert, clientTLS := apiTLS(t)
	member := func(id string, bootstrap bool, join []string, oldRPC bool) (*Cluster, *fsm.FSM, *apiServer) {
		api := startAPI(t, cert)
		f, err := fsm.Open(filepath.Join(dir, id+".db"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := Open(Config{NodeID: id, Dir: filepath.Join(dir, id), RaftBind: freeTCP(t), APIAdvertise: api.addr,
			Bootstrap: bootstrap, Join: join, CAKey: key, ClientTLS: clientTLS, Timing: FastTiming(),
			Logger: slog.New(slog.DiscardHandler)}, f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Shutdown(); f.Close() })
		var h http.Handler = c.Handler()
		if oldRPC {
			inner := h
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == pathApplyBatch {
					http.NotFound(w, r)
					return
				}
				if r.URL.Path == pathApply { // it reads JSON envelopes only
					body, _ := io.ReadAll(r.Body)
					if len(body) == 0 || body[0] != '{' {
						w.WriteHeader(http.StatusBadRequest)
						io.WriteString(w, `{"error":{"code":"invalid","message":"fsm: decode envelope"}}`)
						return
					}
					r.Body = io.NopCloser(bytes.NewReader(body))
				}
				inner.ServeHTTP(w, r)
			})
		}
		api.handler.Store(&h)
		return c, f, api
	}
	old, oldFSM, oldAPI := member("old", true, nil, true)
	waitUntil(t, "the old member leads", old.IsLeader)
	follower, _, _ := member("new", false, []string{"https://" + oldAPI.addr}, false)
	waitUntil(t, "the follower knows the leader's address", func() bool {
		_, id := follower.raft.LeaderWithID()
		_, err := follower.fsm.Node(string(id))
		return id == "old" && err == nil
	})

	ctx := context.Background()
	first, err := fsm.DecodeEnvelope(tokenCreate(t, "t1", "secret-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.Apply(ctx, first); err != nil {
		t.Fatalf("write through the follower: %v", err)
	}
	dup, _ := fsm.DecodeEnvelope(tokenCreate(t, "t1", "secret-2"))
	var fe *fsm.Error
	if err := follower.Apply(ctx, dup); !errors.As(err, &fe) || fe.Code != fsm.ErrConflict.Code {
		t.Fatalf("conflicting write through the follower: %v, want %s", err, fsm.ErrConflict.Code)
	}
	if _, err := oldFSM.TokenByID("t1"); err != nil {
		t.Fatalf("the leader does not hold the write: %v", err)
	}
}

// testCAKey makes a software cluster CA key in dir.
func testCAKey(t *testing.T, dir string) signer.Key {
	t.Helper()
	uri, _, err := soft.Generate(filepath.Join(dir, "cluster-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := signer.Open(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func freeTCP(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// waitUntil polls cond, a condition with no event to wait on.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

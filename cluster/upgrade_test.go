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
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/freeport"
	"github.com/quorumca/quorumca/internal/testwait"
	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/soft"
)

// apiServer is a member's HTTPS API port, serving only the internal RPC.
// It listens from the start (the member advertises its address) and takes
// the member's TLS configuration once the member is open.
type apiServer struct {
	addr    string
	handler atomic.Pointer[http.Handler]
	tls     atomic.Pointer[tls.Config]
	// apiOnly: answer every handshake with the API certificate, as a
	// release before the cluster trust domain did.
	apiOnly atomic.Bool
	// silent: drop every request unanswered, as a member that is down or
	// cut off would; silenced counts them.
	silent   atomic.Bool
	silenced atomic.Int64
	// paused: hold every request unanswered until its caller gives up, as
	// a stopped process would.
	paused atomic.Bool
	conns  sync.Map // net.Conn -> struct{}: every open connection
}

// restart drops every open connection, busy or idle, as a restarted
// process would: the next handshake shows what the server shows now.
func (s *apiServer) restart() {
	s.conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
}

func startAPI(t *testing.T, cert tls.Certificate) *apiServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &apiServer{addr: ln.Addr().String()}
	plain := &tls.Config{Certificates: []tls.Certificate{cert}}
	s.tls.Store(plain)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if s.silent.Load() {
				s.silenced.Add(1)
				panic(http.ErrAbortHandler) // the connection closes, no answer
			}
			if s.paused.Load() {
				<-r.Context().Done()
				return
			}
			if h := s.handler.Load(); h != nil {
				(*h).ServeHTTP(w, r)
				return
			}
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}),
		TLSConfig: &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if s.apiOnly.Load() {
				return plain, nil
			}
			cfg := s.tls.Load()
			if cfg.GetConfigForClient != nil {
				if c, err := cfg.GetConfigForClient(hello); c != nil || err != nil {
					return c, err
				}
			}
			return cfg, nil
		}},
	}
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.conns.Store(c, struct{}{})
		case http.StateClosed, http.StateHijacked:
			s.conns.Delete(c)
		}
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return s
}

// serve makes the API answer with c's internal RPC, as a node's API does.
func (s *apiServer) serve(c *Cluster, h http.Handler) {
	s.tls.Store(c.ServerTLS(s.tls.Load()))
	s.handler.Store(&h)
}

// apiTLS makes a self-signed server certificate for 127.0.0.1: a member's
// API certificate, which no other member ever trusts.
func apiTLS(t *testing.T) tls.Certificate {
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
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: leaf}
}

// A follower forwarding to a leader that predates batched forwarding (a
// rolling upgrade, followers first) falls back to one RPC per write.
// upgradeCluster starts members of a two-release cluster on real TCP.
type upgradeCluster struct {
	t    *testing.T
	dir  string
	key  signer.Key
	cert tls.Certificate
}

const upgradeSecret = "test-cluster-secret-0123456789"

func newUpgradeCluster(t *testing.T) *upgradeCluster {
	dir := t.TempDir()
	return &upgradeCluster{t: t, dir: dir, key: testCAKey(t, dir), cert: apiTLS(t)}
}

// member starts a member; while old holds true its internal RPC answers as
// a binary from before log format 1 would: no apply-batch, no format, and
// apply reads JSON envelopes only.
func (u *upgradeCluster) member(id string, bootstrap bool, join []string, old *atomic.Bool) (*Cluster, *fsm.FSM, *apiServer) {
	return u.memberWith(id, bootstrap, join, old, nil)
}

// memberWith is member with its configuration adjusted by mutate; each
// member gets directories of its own, so an id may come back.
func (u *upgradeCluster) memberWith(id string, bootstrap bool, join []string, old *atomic.Bool, mutate func(*Config)) (*Cluster, *fsm.FSM, *apiServer) {
	t := u.t
	api := startAPI(t, u.cert)
	dir := t.TempDir()
	f, err := fsm.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{NodeID: id, Dir: filepath.Join(dir, "raft"), RaftBind: freeport.For(t), APIAdvertise: api.addr,
		Bootstrap: bootstrap, Join: join, CAKey: u.key, Secret: upgradeSecret, Timing: FastTiming(),
		Logger: slog.New(slog.DiscardHandler)}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := Open(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown(); f.Close() })
	inner := c.Handler()
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if old != nil && old.Load() {
			switch r.URL.Path {
			case pathApplyBatch, pathFormat:
				http.NotFound(w, r)
				return
			case pathApply:
				body, _ := io.ReadAll(r.Body)
				if len(body) == 0 || body[0] != '{' {
					w.WriteHeader(http.StatusBadRequest)
					io.WriteString(w, `{"error":{"code":"invalid","message":"fsm: decode envelope"}}`)
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
		}
		inner.ServeHTTP(w, r)
	})
	api.serve(c, h)
	return c, f, api
}

func TestForwardingToALeaderWithoutBatches(t *testing.T) {
	u := newUpgradeCluster(t)
	var isOld atomic.Bool
	isOld.Store(true)
	old, oldFSM, oldAPI := u.member("old", true, nil, &isOld)
	testwait.For(t, 20*time.Second, "the old member to lead", old.IsLeader)
	follower, _, _ := u.member("new", false, []string{"https://" + oldAPI.addr}, nil)
	testwait.For(t, 20*time.Second, "the follower to know the leader's address", func() bool {
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
	if err := follower.Apply(ctx, dup); !fsm.IsRefusal(err) || !errors.Is(err, fsm.ErrConflict) {
		t.Fatalf("conflicting write through the follower: %v, want %s", err, fsm.ErrConflict.Code)
	}
	if _, err := oldFSM.TokenByID("t1"); err != nil {
		t.Fatalf("the leader does not hold the write: %v", err)
	}
}

// A follower of this release refuses a leader that shows its API
// certificate to peers (a release before the cluster trust domain): it
// neither forwards to it nor takes a read index from it, so it is not
// ready, until the leader runs this release too. Raft itself works all
// along.
func TestUpgradedFollowerRefusesALeaderWithoutNodeTLS(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, _, leaderAPI := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	follower, followerFSM, _ := u.member("follower", false, []string{"https://" + leaderAPI.addr}, nil)
	testwait.For(t, 20*time.Second, "the follower to join", func() bool {
		_, err := followerFSM.Node("leader")
		return err == nil
	})
	leaderAPI.apiOnly.Store(true)       // the leader as a release before the trust domain
	leaderAPI.restart()                 // no connection from before goes on
	follower.rpc.CloseIdleConnections() // as the upgraded follower's restart would

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := follower.Barrier(ctx); err == nil {
		t.Fatal("a follower took a read index from a leader that showed no node certificate")
	}
	env, _ := fsm.DecodeEnvelope(tokenCreate(t, "t1", "secret-1"))
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := follower.Apply(ctx2, env); err == nil {
		t.Fatal("a follower forwarded a write to a leader that showed no node certificate")
	}

	leaderAPI.apiOnly.Store(false) // upgraded
	if err := follower.Barrier(context.Background()); err != nil {
		t.Fatalf("read index once the leader shows its node certificate: %v", err)
	}
	if err := follower.Apply(context.Background(), env); err != nil {
		t.Fatalf("write through the follower once the leader is upgraded: %v", err)
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

// While a server reads only log format 0, the leader writes JSON envelopes,
// one command per entry; once every server reads format 1, batch entries
// and binary envelopes; and back when an old server appears again.
func TestLeaderWritesTheFormatEveryServerReads(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, _, leaderAPI := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	testwait.For(t, 20*time.Second, "a lone leader to write format 1", func() bool { return leader.logFormat() == fsm.LogFormat })
	var isOld atomic.Bool
	isOld.Store(true)
	follower, _, _ := u.member("follower", false, []string{"https://" + leaderAPI.addr}, &isOld)
	testwait.For(t, 20*time.Second, "the follower to be a voter with a known address", func() bool {
		servers, _ := leader.Servers()
		_, err := leader.fsm.Node("follower")
		return len(servers) == 2 && err == nil && follower.fsm.AppliedIndex() > 0
	})
	testwait.For(t, 20*time.Second, "the leader to write format 0", func() bool { return leader.logFormat() == 0 })

	n := 0
	writeMany := func() (first, last uint64) {
		first = leader.raft.LastIndex() + 1
		var wg sync.WaitGroup
		for range 40 {
			n++
			data := tokenCreate(t, fmt.Sprintf("t%d", n), fmt.Sprintf("secret-%d", n))
			wg.Go(func() {
				env, err := fsm.DecodeEnvelope(data)
				if err == nil {
					err = leader.Apply(context.Background(), env)
				}
				if err != nil {
					t.Errorf("write: %v", err)
				}
			})
		}
		wg.Wait()
		return first, leader.raft.LastIndex()
	}
	// formats lists the first byte of every command entry in first..last.
	formats := func(first, last uint64) map[byte]int {
		out := map[byte]int{}
		for i := first; i <= last; i++ {
			var l raft.Log
			if err := leader.logs.GetLog(i, &l); err != nil {
				t.Fatal(err)
			}
			if l.Type == raft.LogCommand {
				out[l.Data[0]]++
			}
		}
		return out
	}

	if got := formats(writeMany()); len(got) != 1 || got['{'] < 40 {
		t.Fatalf("with a format-0 server the leader wrote entries starting %v, want 40+ JSON envelopes only", got)
	}
	isOld.Store(false) // the follower is upgraded
	testwait.For(t, 20*time.Second, "the leader to write format 1", func() bool { return leader.logFormat() == fsm.LogFormat })
	if got := formats(writeMany()); got['{'] > 0 || got[0x00]+got[0x01] == 0 || got[0x00] == 0 {
		t.Fatalf("with every server on format 1 the leader wrote entries starting %v, want batches and binary envelopes only", got)
	}
	isOld.Store(true) // an old binary again (it would panic on format 1)
	testwait.For(t, 20*time.Second, "the leader to write format 0 again", func() bool { return leader.logFormat() == 0 })
	if got := formats(writeMany()); len(got) != 1 || got['{'] < 40 {
		t.Fatalf("after an old server came back the leader wrote entries starting %v", got)
	}
}

// A command that needs log format 2 is refused with upgrade_in_progress,
// and never proposed, while a server reads an older format; once every
// server reads it, the same command goes through.
func TestNewCommandWaitsForEveryServer(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, _, leaderAPI := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	var isOld atomic.Bool
	isOld.Store(true)
	u.member("old", false, []string{"https://" + leaderAPI.addr}, &isOld)
	testwait.For(t, 20*time.Second, "the leader to know an old server is there", func() bool {
		servers, _ := leader.Servers()
		return len(servers) == 2 && leader.formatKnown.Load() && leader.logFormat() == 0
	})
	var p fsm.ProvisionerPut
	p.Provisioner.Name, p.Provisioner.Authority = "wild", "none"
	p.Provisioner.Policy.AllowWildcard = true // provisioner_put version 2: format 2
	env, err := fsm.NewEnvelope(fsm.CmdProvisionerPut, "p1", p)
	if err != nil || env.Format() != 2 {
		t.Fatalf("envelope %v needs format %d, want 2", err, env.Format())
	}
	last := leader.raft.LastIndex()
	if err := leader.Apply(context.Background(), env); !errors.Is(err, fsm.ErrUpgrading) {
		t.Fatalf("a format-2 command with a format-0 server: %v, want %s", err, fsm.ErrUpgrading.Code)
	}
	for i := last + 1; i <= leader.raft.LastIndex(); i++ {
		var l raft.Log
		if leader.logs.GetLog(i, &l) == nil && bytes.Contains(l.Data, []byte(`"wild"`)) {
			t.Fatalf("the refused command was written to the log at %d", i)
		}
	}
	isOld.Store(false)
	testwait.For(t, 20*time.Second, "the leader to write the newest format", func() bool { return leader.logFormat() == fsm.LogFormat })
	// Applied now: the FSM's own verdict (no such authority), not the gate's.
	if err := leader.Apply(context.Background(), env); !errors.Is(err, fsm.ErrAuthorityUnknown) {
		t.Fatalf("the command once every server reads format 2: %v, want %s", err, fsm.ErrAuthorityUnknown.Code)
	}
}

// A server just added to the configuration has not announced itself yet:
// a newer command then waits for it, and is not refused as though a
// server ran an older release (a fresh cluster's first admin calls got
// upgrade_in_progress); one that stays silent past unannouncedGrace counts
// as format 0; once it announces, the command goes through.
func TestAnUnannouncedServerDelaysNewerCommands(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, _, _ := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	testwait.For(t, 20*time.Second, "the leader to write the newest format", func() bool {
		return leader.formatKnown.Load() && leader.logFormat() == fsm.LogFormat
	})
	// A nonvoter, so the leader keeps its quorum; nothing listens there.
	if err := leader.raft.AddNonvoter("quiet", raft.ServerAddress(freeport.For(t)), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 20*time.Second, "the leader to write format 0 for the unannounced server", func() bool { return leader.logFormat() == 0 })
	var p fsm.ProvisionerPut
	p.Provisioner.Name, p.Provisioner.Authority = "wild", "none"
	p.Provisioner.Policy.AllowWildcard = true // provisioner_put version 2: format 2
	env, _ := fsm.NewEnvelope(fsm.CmdProvisionerPut, "p1", p)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err := leader.Apply(ctx, env)
	cancel()
	if err == nil || errors.Is(err, fsm.ErrUpgrading) {
		t.Fatalf("a format-2 command while a server has not announced itself: %v, want it held (a timeout)", err)
	}
	testwait.For(t, 3*unannouncedGrace, "the leader to stop waiting for the silent server", leader.formatKnown.Load)
	if err := leader.Apply(context.Background(), env); !errors.Is(err, fsm.ErrUpgrading) {
		t.Fatalf("a format-2 command once the unannounced server counts as format 0: %v, want %s", err, fsm.ErrUpgrading.Code)
	}
	n := fsm.Node{ID: "quiet", APIAddr: freeport.For(t), RaftAddr: "unused", LogFormat: fsm.LogFormat}
	if err := leader.propose(context.Background(), fsm.CmdNodeUpsert, n); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 20*time.Second, "the leader to write the announced format", func() bool { return leader.logFormat() == fsm.LogFormat })
	if err := leader.Apply(context.Background(), env); !errors.Is(err, fsm.ErrAuthorityUnknown) {
		t.Fatalf("the command once the server announced format %d: %v, want the FSM's own verdict", fsm.LogFormat, err)
	}
}

// A server that does not answer counts as the format it announced, so a
// node that is down does not turn newer commands off; one that answers
// "no such question" (an older release) still counts as format 0.
func TestAnUnreachableServerKeepsItsAnnouncedFormat(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, _, leaderAPI := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	_, _, followerAPI := u.member("follower", false, []string{"https://" + leaderAPI.addr}, nil)
	testwait.For(t, 20*time.Second, "the follower to announce its format and the leader to write it", func() bool {
		n, err := leader.fsm.Node("follower")
		servers, _ := leader.Servers()
		return err == nil && n.LogFormat == fsm.LogFormat && len(servers) == 2 && leader.logFormat() == fsm.LogFormat
	})
	followerAPI.silent.Store(true)
	testwait.For(t, 20*time.Second, "the leader to ask the silent follower twice", func() bool { return followerAPI.silenced.Load() >= 2 })
	if f := leader.logFormat(); f != fsm.LogFormat {
		t.Fatalf("with a silent follower that announced format %d the leader writes format %d", fsm.LogFormat, f)
	}
	var p fsm.ProvisionerPut
	p.Provisioner.Name, p.Provisioner.Authority = "wild", "none"
	p.Provisioner.Policy.AllowWildcard = true
	env, _ := fsm.NewEnvelope(fsm.CmdProvisionerPut, "p1", p)
	if err := leader.Apply(context.Background(), env); !errors.Is(err, fsm.ErrAuthorityUnknown) {
		t.Fatalf("a format-2 command while a server is down: %v, want the FSM's own verdict", err)
	}
}

// A node whose binary does not read the log formats the log holds is not
// added: it would panic on its first entry. A release before the question
// sends no format, and counts as 0. (Before, any node joined.)
func TestJoinOfABinaryThatCannotReadTheLogIsRefused(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, lf, leaderAPI := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	follower, _, _ := u.member("follower", false, []string{"https://" + leaderAPI.addr}, nil)
	testwait.For(t, 20*time.Second, "the leader to write binary entries", func() bool {
		servers, _ := leader.Servers()
		return len(servers) == 2 && leader.logFormat() == fsm.LogFormat
	})
	if err := leader.Apply(context.Background(), bigTokenCreate(t, "binary", 10)); err != nil {
		t.Fatal(err)
	}
	if h := lf.HighestLogFormat(); h < 1 {
		t.Fatalf("the log holds format %d, want binary entries", h)
	}
	for _, body := range []string{
		`{"id": "elder", "raft_addr": "127.0.0.1:1"}`,                  // a release before the question
		`{"id": "elder", "raft_addr": "127.0.0.1:1", "log_format": 0}`, // one that reads JSON entries only
		// One that reads less than the leader writes, if not yet less
		// than the log holds (the leader marks its format in the log soon
		// after): until the leader's next question it would commit what
		// that binary panics on. (Before, it was added.)
		fmt.Sprintf(`{"id": "elder", "raft_addr": "127.0.0.1:1", "log_format": %d}`, fsm.LogFormat-1),
	} {
		var out struct{}
		err := follower.post(context.Background(), "https://"+leaderAPI.addr+pathJoin, []byte(body), &out)
		if err == nil || !strings.Contains(err.Error(), "upgrade its binary") {
			t.Errorf("join %s: %v, want refused", body, err)
		}
	}
	if leader.isServer("elder") {
		t.Fatal("a node that cannot read the log was added")
	}
}

// A leader elected while a server is paused (or cut off) writes the
// format every server announced from its first write: batch entries and
// binary envelopes. (Before, it wrote JSON, one command per entry, until
// its question to the paused server timed out.)
func TestANewLeaderWritesTheAnnouncedFormatFromItsFirstWrite(t *testing.T) {
	u := newUpgradeCluster(t)
	a, _, aAPI := u.member("a", true, nil, nil)
	testwait.For(t, 20*time.Second, "a to lead", a.IsLeader)
	join := []string{"https://" + aAPI.addr}
	b, bFSM, _ := u.member("b", false, join, nil)
	_, _, cAPI := u.member("c", false, join, nil)
	testwait.For(t, 20*time.Second, "three servers whose announcements b applied", func() bool {
		servers, _ := a.Servers()
		for _, id := range []string{"a", "b", "c"} {
			if n, err := bFSM.Node(id); err != nil || n.LogFormat != fsm.LogFormat {
				return false
			}
		}
		return len(servers) == 3
	})
	cAPI.paused.Store(true)
	if err := a.raft.LeadershipTransferToServer("b", b.transport.LocalAddr()).Error(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 20*time.Second, "b to lead", b.IsLeader)

	first := b.raft.LastIndex() + 1
	var wg sync.WaitGroup
	for i := range 40 {
		data := tokenCreate(t, fmt.Sprintf("t%d", i), fmt.Sprintf("secret-%d", i))
		wg.Go(func() {
			env, err := fsm.DecodeEnvelope(data)
			if err == nil {
				err = b.Apply(context.Background(), env)
			}
			if err != nil {
				t.Errorf("write: %v", err)
			}
		})
	}
	wg.Wait()
	json := 0
	for i := first; i <= b.raft.LastIndex(); i++ {
		var l raft.Log
		if err := b.logs.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		if l.Type == raft.LogCommand && l.Data[0] == '{' {
			json++
		}
	}
	if json > 0 {
		t.Fatalf("a new leader wrote %d JSON entries while every server had announced format %d", json, fsm.LogFormat)
	}
}

// A command encoded for a format the leader stopped writing while the
// command queued (a server went back to an older release) is not handed
// to raft: the caller is told to try again, and the retry encodes it for
// the format every server reads.
func TestAnEntryEncodedForADroppedFormatIsNotWritten(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, _, leaderAPI := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	var isOld atomic.Bool
	isOld.Store(true)
	u.member("old", false, []string{"https://" + leaderAPI.addr}, &isOld)
	testwait.For(t, 20*time.Second, "the leader to write format 0", func() bool {
		servers, _ := leader.Servers()
		return len(servers) == 2 && leader.formatKnown.Load() && leader.logFormat() == 0
	})
	env, err := fsm.DecodeEnvelope(tokenCreate(t, "late-entry", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.EncodeFor(fsm.LogFormat) // as encoded before the format dropped
	if err != nil {
		t.Fatal(err)
	}
	last := leader.raft.LastIndex()
	if r := leader.batch.propose(context.Background(), data, fsm.LogFormat); !retryable(r.err) {
		t.Fatalf("an entry encoded for format %d while the leader writes 0: %+v, want a retry", fsm.LogFormat, r)
	}
	for i := last + 1; i <= leader.raft.LastIndex(); i++ {
		var l raft.Log
		if leader.logs.GetLog(i, &l) == nil && bytes.Contains(l.Data, []byte("late-entry")) {
			t.Fatalf("the entry encoded for the dropped format was written at %d", i)
		}
	}
	if err := leader.Apply(context.Background(), env); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	for i := last + 1; i <= leader.raft.LastIndex(); i++ {
		var l raft.Log
		if leader.logs.GetLog(i, &l) == nil && bytes.Contains(l.Data, []byte("late-entry")) && l.Data[0] != '{' {
			t.Fatalf("the retry was written at %d as format %#x, want a JSON envelope", i, l.Data[0])
		}
	}
}

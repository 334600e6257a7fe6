package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/freeport"
	"github.com/quorumca/quorumca/internal/testwait"
)

// The log format gate attacked from outside (format.go, batch.go commit,
// forward.go applyLocal, join.go): each test failed before its fix.

// format2Command is a command only a binary reading log format 2 applies
// (provisioner_put version 2): a format-1 binary panics on it.
func format2Command(t *testing.T, name string) *fsm.Envelope {
	t.Helper()
	var p fsm.ProvisionerPut
	p.Provisioner.Name, p.Provisioner.Authority = name, "none"
	p.Provisioner.Policy.AllowWildcard = true
	env, err := fsm.NewEnvelope(fsm.CmdProvisionerPut, name, p)
	if err != nil || env.Format() != 2 {
		t.Fatalf("envelope %v needs format %d, want 2", err, env.Format())
	}
	return env
}

// entryFormats returns, for each command entry in first..last, the lowest
// log format a binary needs to read it.
func entryFormats(t *testing.T, c *Cluster, first, last uint64) map[uint64]int {
	t.Helper()
	out := map[uint64]int{}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := c.logs.GetLog(i, &l); err != nil {
			continue
		}
		if l.Type != raft.LogCommand {
			continue
		}
		f := 0
		envs := [][]byte{l.Data}
		if l.Data[0] == 0x00 {
			f = 1
			envs, _ = fsm.SplitBatch(l.Data)
		}
		for _, e := range envs {
			env, err := fsm.DecodeEnvelope(e)
			if err != nil {
				t.Fatalf("entry %d: %v", i, err)
			}
			if e[0] != '{' {
				f = max(f, 1)
			}
			f = max(f, env.Format())
		}
		out[i] = f
	}
	return out
}

// Join bodies that lie about the log format, or say nothing, are refused;
// only a lie upward is let through, and it harms only the liar.
func TestForgedJoinBodies(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, _, leaderAPI := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	follower, _, _ := u.member("follower", false, []string{"https://" + leaderAPI.addr}, nil)
	testwait.For(t, 20*time.Second, "two servers at format 2", func() bool {
		servers, _ := leader.Servers()
		return len(servers) == 2 && leader.logFormat() == fsm.LogFormat
	})
	// Put a format-2 entry in the log, so HighestLogFormat is 2.
	if err := leader.Apply(context.Background(), format2Command(t, "wild")); !errors.Is(err, fsm.ErrAuthorityUnknown) {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, format string
		admitted     bool
	}{
		{"missing", ``, false},
		{"zero", `,"log_format":0`, false},
		{"negative", `,"log_format":-1`, false},
		{"min-int", `,"log_format":-9223372036854775808`, false},
		{"string", `,"log_format":"2"`, false},
		{"float", `,"log_format":2.5`, false},
		{"overflowing", `,"log_format":1e30`, false},
		{"huge", `,"log_format":9223372036854775807`, true}, // a lie upward: admitted (nothing can check it)
	} {
		id := "j-" + tc.name
		body := fmt.Sprintf(`{"id":%q,"raft_addr":%q%s}`, id, freeport.For(t), tc.format)
		var out struct{}
		err := follower.post(context.Background(), "https://"+leaderAPI.addr+pathJoin, []byte(body), &out)
		if got := leader.isServer(id); got != tc.admitted {
			t.Errorf("join with log_format %s: admitted %v (%v), want %v", tc.name, got, err, tc.admitted)
		} else {
			t.Logf("join with log_format %s: admitted %v (%v)", tc.name, got, err)
		}
		if leader.isServer(id) {
			// Keep the quorum at the two live servers.
			if err := leader.raft.RemoveServer(raft.ServerID(id), 0, 0).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// wrapFormat makes api answer the format question with body instead of
// the member's own answer.
func wrapFormat(api *apiServer, body *atomic.Pointer[string], asked *atomic.Int64) {
	inner := *api.handler.Load()
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b := body.Load(); b != nil && r.URL.Path == pathFormat {
			defer asked.Add(1)
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			if code, ok := strings.CutPrefix(*b, "status "); ok {
				var n int
				fmt.Sscan(code, &n)
				w.WriteHeader(n)
				return
			}
			io.WriteString(w, *b)
			return
		}
		inner.ServeHTTP(w, r)
	})
	api.handler.Store(&h)
}

// A server (faulty or hostile, with a node certificate) that answers the
// format question with nonsense stops no write: a negative answer counts
// as no answer. (Before, -1 made every command "need a newer format than
// the cluster reads", and -4294967294 wrapped round to 2 in an int32.)
func TestANonsenseFormatAnswerStopsNoWrite(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, _, leaderAPI := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	_, _, fAPI := u.member("follower", false, []string{"https://" + leaderAPI.addr}, nil)
	testwait.For(t, 20*time.Second, "two servers at the newest format", func() bool {
		servers, _ := leader.Servers()
		return len(servers) == 2 && leader.logFormat() == fsm.LogFormat
	})
	var answer atomic.Pointer[string]
	var asked atomic.Int64
	wrapFormat(fAPI, &answer, &asked)
	for _, body := range []string{`{"format":-1}`, `{"format":-4294967294}`, `{"format":"2"}`} {
		answer.Store(&body)
		n := asked.Load()
		testwait.For(t, 20*time.Second, "the leader to ask twice more", func() bool { return asked.Load() >= n+2 })
		f := leader.logFormat()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := leader.Apply(ctx, bigTokenCreate(t, fmt.Sprintf("t-%d", n), 10))
		cancel()
		if f < 0 || f > fsm.LogFormat {
			t.Errorf("answer %s: the leader's format is %d, outside 0..%d", body, f, fsm.LogFormat)
		}
		if err != nil {
			t.Errorf("answer %s: a format-0 command was refused: %v", body, err)
		}
	}
}

// A node announces only itself: one node's announcement of another (its
// format, its address) is refused by the leader, and the table keeps what
// the node announced. (Before, any node certificate could rewrite any
// node's entry: a format the node does not read, or -1, which stopped
// every write.)
func TestANodeMayAnnounceOnlyItself(t *testing.T) {
	u := newUpgradeCluster(t)
	a, _, aAPI := u.member("a", true, nil, nil)
	testwait.For(t, 20*time.Second, "a to lead", a.IsLeader)
	join := []string{"https://" + aAPI.addr}
	b, _, _ := u.member("b", false, join, nil)
	u.member("c", false, join, nil)
	testwait.For(t, 20*time.Second, "three servers that announced themselves", func() bool {
		servers, _ := a.Servers()
		for _, id := range []string{"a", "b", "c"} {
			if n, err := a.fsm.Node(id); err != nil || n.LogFormat != fsm.LogFormat {
				return false
			}
		}
		return len(servers) == 3
	})
	cNode, _ := a.fsm.Node("c")
	for _, format := range []int{0, -1} {
		n := *cNode
		n.LogFormat, n.APIAddr = format, "127.0.0.1:1"
		env, err := fsm.NewEnvelope(fsm.CmdNodeUpsert, "", n)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = b.Apply(ctx, env)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "may announce only itself") {
			t.Errorf("b's announcement of c at format %d: %v, want refused", format, err)
		}
	}
	if n, err := a.fsm.Node("c"); err != nil || n.LogFormat != cNode.LogFormat || n.APIAddr != cNode.APIAddr {
		t.Fatalf("c's entry after b's forgeries: %+v (%v), want %+v", n, err, cNode)
	}
}

// A format drop (a server switching to format 0) while writes
// pour in through the leader and through both followers (forwarded
// batches). Once the leader wrote its first entry for format 0, no later
// entry may need format 1 or 2 (raft appends in the order commit hands
// entries over; commit and setFormat are ordered by formatMu).
func TestFormatDropUnderConcurrentWrites(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, _, leaderAPI := u.member("leader", true, nil, nil)
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	join := []string{"https://" + leaderAPI.addr}
	f1, _, _ := u.member("f1", false, join, nil)
	var isOld atomic.Bool
	f2, _, _ := u.member("f2", false, join, &isOld)
	testwait.For(t, 20*time.Second, "three servers at format 2", func() bool {
		servers, _ := leader.Servers()
		for _, id := range []string{"f1", "f2"} {
			if _, err := f1.fsm.Node(id); err != nil {
				return false
			}
			if _, err := f2.fsm.Node(id); err != nil {
				return false
			}
		}
		return len(servers) == 3 && leader.logFormat() == fsm.LogFormat
	})
	var n atomic.Int64
	for cycle := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 24 {
			via := []*Cluster{leader, f1, f2}[w%3]
			wg.Go(func() {
				for ctx.Err() == nil {
					id := fmt.Sprintf("t%d", n.Add(1))
					env, _ := fsm.DecodeEnvelope(tokenCreate(t, id, "s-"+id))
					wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
					err := via.Apply(wctx, env)
					wcancel()
					if err != nil && ctx.Err() == nil {
						t.Errorf("write %s through %s: %v", id, via.cfg.NodeID, err)
					}
				}
			})
		}
		awaitWrites(t, 100, "writes under way", &n)
		start := leader.raft.LastIndex()
		isOld.Store(true) // f2 back to a format-0 binary
		testwait.For(t, 20*time.Second, "the leader to write format 0", func() bool { return leader.logFormat() == 0 })
		awaitWrites(t, 100, "writes after the drop", &n)
		cancel()
		wg.Wait()
		end := leader.raft.LastIndex()
		formats := entryFormats(t, leader, start+1, end)
		firstJSON := uint64(0)
		for i := start + 1; i <= end; i++ {
			f, ok := formats[i]
			if !ok {
				continue
			}
			if f == 0 && firstJSON == 0 {
				firstJSON = i
			}
			if firstJSON != 0 && f > 0 {
				t.Errorf("cycle %d: entry %d of format %d after the first format-0 entry %d", cycle, i, f, firstJSON)
			}
		}
		if firstJSON == 0 {
			t.Fatalf("cycle %d: no format-0 entry in %d..%d", cycle, start+1, end)
		}
		t.Logf("cycle %d: entries %d..%d, first format-0 entry %d, %d writes so far", cycle, start+1, end, firstJSON, n.Load())
		isOld.Store(false)
		testwait.For(t, 20*time.Second, "the leader to write format 2 again", func() bool { return leader.logFormat() == fsm.LogFormat })
	}
}

// A leader elected while a server has gone back to an older binary starts
// its term at what that server answered, not at what it announced when it
// ran a newer one: the leader that heard the answer wrote it in the node
// table (healFormat). (Before, the new leader wrote newer entries until its
// own question came back.)
func TestALeaderElectedDuringADropStartsAtTheAnsweredFormat(t *testing.T) {
	u := newUpgradeCluster(t)
	a, _, aAPI := u.member("a", true, nil, nil)
	testwait.For(t, 20*time.Second, "a to lead", a.IsLeader)
	join := []string{"https://" + aAPI.addr}
	b, bFSM, _ := u.member("b", false, join, nil)
	var isOld atomic.Bool
	u.member("c", false, join, &isOld)
	testwait.For(t, 20*time.Second, "three servers b knows", func() bool {
		servers, _ := a.Servers()
		for _, id := range []string{"a", "b", "c"} {
			if _, err := bFSM.Node(id); err != nil {
				return false
			}
		}
		return len(servers) == 3 && a.logFormat() == fsm.LogFormat
	})
	isOld.Store(true)
	testwait.For(t, 20*time.Second, "a to write format 0, and b's table to say what c answered", func() bool {
		n, err := bFSM.Node("c")
		return a.logFormat() == 0 && err == nil && n.LogFormat == 0
	})
	// Writes pour in through b from before the transfer (forwarded to a)
	// to after it (b's own).
	first := a.raft.LastIndex() + 1
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := n.Add(1)
				env, _ := fsm.DecodeEnvelope(tokenCreate(t, fmt.Sprintf("t%d", i), fmt.Sprintf("s%d", i)))
				if err := b.Apply(context.Background(), env); err != nil {
					t.Errorf("write: %v", err)
				}
			}
		})
	}
	awaitWrites(t, 20, "writes under way", &n)
	if err := a.raft.LeadershipTransferToServer("b", b.transport.LocalAddr()).Error(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 20*time.Second, "b to lead", b.IsLeader)
	awaitWrites(t, 50, "writes through the new leader", &n)
	cancel()
	wg.Wait()
	t.Logf("%d writes", n.Load())
	var bad []string
	for i, f := range entryFormats(t, b, first, b.raft.LastIndex()) {
		if f > 0 {
			var l raft.Log
			b.logs.GetLog(i, &l)
			bad = append(bad, fmt.Sprintf("index %d term %d format %d", i, l.Term, f))
		}
	}
	if len(bad) > 0 {
		t.Errorf("the new leader (term %d; a led until then at format 0) wrote %d entries a format-0 server cannot read: %s",
			b.raft.CurrentTerm(), len(bad), strings.Join(bad, ", "))
	}
}

// awaitWrites waits until k more writes than now have started (n counts them).
func awaitWrites(t *testing.T, k int64, what string, n *atomic.Int64) {
	t.Helper()
	from := n.Load()
	testwait.For(t, 20*time.Second, what, func() bool { return n.Load() >= from+k })
}

package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/freeport"
	"github.com/quorumca/quorumca/internal/testwait"
)

// openLeader starts a one-node cluster on real TCP and bolt files and waits
// until it leads.
func openLeader(t *testing.T) (*Cluster, *fsm.FSM) {
	t.Helper()
	dir := t.TempDir()
	key := testCAKey(t, dir)
	f, err := fsm.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	addr := freeport.For(t)
	c, err := Open(Config{NodeID: "n1", Dir: filepath.Join(dir, "raft"), RaftBind: addr, Bootstrap: true,
		Timing: FastTiming(), CAKey: key, Logger: slog.New(slog.DiscardHandler)}, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown(); f.Close() })
	testwait.For(t, 20*time.Second, "the node to lead", c.IsLeader)
	return c, f
}

// tokenCreate makes a command creating one token; tokens with the same id
// and different secrets conflict.
func tokenCreate(t *testing.T, id, secret string) []byte {
	t.Helper()
	h := sha256.Sum256([]byte(secret))
	env, err := fsm.NewEnvelope(fsm.CmdTokenCreate, "", fsm.TokenCreate{Tokens: []fsm.Token{{
		ID: id, Hash: h[:], SANs: []string{id + ".example"}, ExpiresAt: time.Now().Add(time.Hour),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// One raft entry carries the batch, and each command gets its own verdict:
// a command refused in the middle does not take its neighbours with it.
func TestBatchEntryAnswersEachCommand(t *testing.T) {
	c, f := openLeader(t)
	// A new leader writes one entry per command (format 0) until it knows
	// what its servers read; batches need format 1.
	testwait.For(t, 20*time.Second, "the leader to write batch entries", func() bool { return c.logFormat() >= 1 })
	batch := []*proposal{
		{data: tokenCreate(t, "a", "secret-a")},
		{data: tokenCreate(t, "a", "secret-other")}, // same id: refused
		{data: tokenCreate(t, "b", "secret-b")},
	}
	for _, p := range batch {
		p.done = make(chan proposalResult, 1)
	}
	c.commit(batch)
	var got []proposalResult
	for _, p := range batch {
		got = append(got, <-p.done)
	}
	for i, r := range got {
		if r.err != nil {
			t.Fatalf("command %d: %v", i, r.err)
		}
		if r.index != got[0].index {
			t.Fatalf("command %d committed at %d, command 0 at %d: not one entry", i, r.index, got[0].index)
		}
	}
	if got[0].resp != nil || got[2].resp != nil {
		t.Fatalf("fresh tokens refused: %v, %v", got[0].resp, got[2].resp)
	}
	if err, _ := got[1].resp.(error); !errors.Is(err, fsm.ErrConflict) {
		t.Fatalf("duplicate token id: got %v, want %s", got[1].resp, fsm.ErrConflict.Code)
	}
	for id, secret := range map[string]string{"a": "secret-a", "b": "secret-b"} {
		tok, err := f.TokenByID(id)
		if err != nil {
			t.Fatalf("token %s: %v", id, err)
		}
		if h := sha256.Sum256([]byte(secret)); string(tok.Hash) != string(h[:]) {
			t.Fatalf("token %s holds the refused command's secret", id)
		}
	}
}

// Many writers at once through Apply: every write gets the verdict of its
// own command, whichever entry it landed in.
func TestConcurrentAppliesKeepTheirVerdicts(t *testing.T) {
	c, f := openLeader(t)
	const ids = 100
	type outcome struct {
		id     int
		secret string
		err    error
	}
	out := make(chan outcome, 2*ids)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range ids {
		for _, s := range []string{"x", "y"} { // two secrets race for each id
			secret := fmt.Sprintf("%d-%s", i, s)
			env, err := fsm.DecodeEnvelope(tokenCreate(t, fmt.Sprint("t", i), secret))
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				<-start
				out <- outcome{i, secret, c.Apply(context.Background(), env)}
			})
		}
	}
	close(start)
	wg.Wait()
	close(out)
	winners := map[int]string{}
	for o := range out {
		switch {
		case o.err == nil:
			if w, dup := winners[o.id]; dup {
				t.Fatalf("token t%d created twice (%s and %s)", o.id, w, o.secret)
			}
			winners[o.id] = o.secret
		case errors.Is(o.err, fsm.ErrConflict):
		default:
			t.Fatalf("token t%d: %v", o.id, o.err)
		}
	}
	if len(winners) != ids {
		t.Fatalf("%d of %d tokens created", len(winners), ids)
	}
	for id, secret := range winners {
		tok, err := f.TokenByID(fmt.Sprint("t", id))
		if err != nil {
			t.Fatal(err)
		}
		if h := sha256.Sum256([]byte(secret)); string(tok.Hash) != string(h[:]) {
			t.Fatalf("token t%d: the stored secret is not the one whose write succeeded", id)
		}
	}
}

package authority

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// recordingRaft passes commands to a real one-node log, records the size
// of every token_create envelope, and fails the token_create numbered
// failAt (1-based; 0: none) as a lost leader would.
type recordingRaft struct {
	Proposer
	mu      sync.Mutex
	creates []int
	failAt  int
}

func (r *recordingRaft) Apply(ctx context.Context, env *fsm.Envelope) error {
	if env.Type == fsm.CmdTokenCreate {
		data, err := env.Encode()
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.creates = append(r.creates, len(data))
		n := len(r.creates)
		r.mu.Unlock()
		if n == r.failAt {
			return fmt.Errorf("%w: injected: no leader", ErrUnavailable)
		}
	}
	return r.Proposer.Apply(ctx, env)
}

// batchCA is c with its commands going through a recordingRaft.
func batchCA(c *testCA, failAt int) (*CA, *recordingRaft) {
	r := &recordingRaft{Proposer: c.raft, failAt: failAt}
	return New(Config{State: c.f, Proposer: r, Now: c.clock.Now}), r
}

// names of about 240 characters each, numbered by the token.
func longTokenNames(n int) []string {
	label := strings.Repeat("a", 60)
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("name%d-{n}.%s.%s.%s.fleet.example", i, label, label, label)
	}
	return out
}

// A batch is split so that every entry stays far below what the cluster
// forwards and batches, and every token is minted once.
func TestTokenBatchEntriesAreBounded(t *testing.T) {
	c := newTestCA(t)
	ca, rec := batchCA(c, 0)
	ms, err := ca.MintTokens(context.Background(), c.admin, TokenRequest{SANs: longTokenNames(100), Count: 500, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i, n := range rec.creates {
		if n > tokenEntryBytes+1024 {
			t.Fatalf("entry %d of the batch is %d bytes, want at most about %d", i, n, tokenEntryBytes)
		}
		total += n
	}
	if total < 10<<20 || len(rec.creates) < total/tokenEntryBytes {
		t.Fatalf("%d entries, %d bytes: not the batch under test", len(rec.creates), total)
	}
	if len(ms) != 500 {
		t.Fatalf("%d tokens minted, want 500", len(ms))
	}
	for _, m := range []MintedToken{ms[0], ms[499]} {
		if tok, err := c.f.TokenByID(m.Token.ID); err != nil || !tok.Outstanding(c.clock.Now()) {
			t.Fatalf("token %s not outstanding: %v", m.Token.ID, err)
		}
	}
	// Small tokens still share entries of up to 500.
	rec.creates = nil
	if _, err := ca.MintTokens(context.Background(), c.admin, TokenRequest{SANs: []string{"d{n}.fleet.example"}, Count: 1200, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if len(rec.creates) != 3 {
		t.Fatalf("1,200 small tokens took %d entries, want 3", len(rec.creates))
	}
}

// A request whose tokens exceed the per-request limit is refused as too
// large, naming the limit, before anything is proposed.
func TestTokenBatchOverTheLimitIsRefused(t *testing.T) {
	c := newTestCA(t)
	ca, rec := batchCA(c, 0)
	_, err := ca.MintTokens(context.Background(), c.admin, TokenRequest{SANs: longTokenNames(100), Count: MaxTokenBatch, TTL: time.Hour})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "16 MiB") {
		t.Fatalf("10,000 tokens of 100 long names: %v, want ErrTooLarge naming 16 MiB", err)
	}
	if len(rec.creates) != 0 {
		t.Fatalf("%d entries proposed for a refused request", len(rec.creates))
	}
}

// A batch that fails part way leaves no usable or outstanding token: the
// entries already committed are withdrawn, and the error says so.
func TestTokenBatchFailingHalfWayIsWithdrawn(t *testing.T) {
	c := newTestCA(t)
	ca, rec := batchCA(c, 3)
	// About 20 tokens per entry: the third entry fails with 40 committed.
	ms, err := ca.MintTokens(context.Background(), c.admin, TokenRequest{SANs: longTokenNames(100), Count: 100, TTL: time.Hour})
	if !errors.Is(err, ErrUnavailable) || ms != nil {
		t.Fatalf("a batch whose third entry fails: %v (%d tokens), want the failure", err, len(ms))
	}
	m := regexp.MustCompile(`after (\d+) of 100 tokens were committed: .*; they were withdrawn`).FindStringSubmatch(err.Error())
	if m == nil || m[1] == "0" {
		t.Fatalf("the error does not say what was minted and withdrawn: %v", err)
	}
	if len(rec.creates) != 3 {
		t.Fatalf("%d entries proposed, want the batch to stop at the failed third", len(rec.creates))
	}
	toks, _, err := c.f.OutstandingTokens("", c.clock.Now(), nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 0 {
		t.Fatalf("%d tokens of the failed batch are still outstanding", len(toks))
	}
}

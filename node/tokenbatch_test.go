package node

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// longNames are 100 distinct names of about 240 characters, each with the
// token's number in it.
func longNames() []string {
	label := strings.Repeat("a", 60)
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("name%d-{n}.%s.%s.%s.fleet.example", i, label, label, label)
	}
	return names
}

// A batch of many tokens with many long names (about 13 MB of tokens)
// through a follower and through the leader of a real cluster is split
// into entries far below the forwarding and batching limits and mints
// every token; one beyond the per-request limit is refused with 413 before
// anything is proposed.
func TestLargeTokenBatchIsSplitOrRefused(t *testing.T) {
	c := newTestCluster(t, 3)
	// About 25 s a batch under the race detector on a busy 2-core machine
	// (half of it waiting on other processes): more than the usual 30 s
	// budget of a test request leaves no margin.
	c.client.Timeout = 3 * time.Minute
	names := longNames()
	for _, via := range []*testNode{c.Followers()[0], c.Leader()} {
		c.WaitConverged() // the last phase's issuance is applied everywhere
		f := via.node.FSM()
		before, _ := f.Audit(fsm.AuditFilter{Command: "token_create", Limit: 1000})
		outstandingBefore := outstanding(t, f)
		r := c.do(via, "POST", "/v1/admin/tokens", map[string]any{"sans": names, "count": 500, "ttl": "1h"}, c.admin)
		if r.status != http.StatusCreated {
			t.Fatalf("500 tokens x 100 long names through %s: %d %.300s", via.cfg.NodeName, r.status, r.body)
		}
		var out struct {
			Tokens []struct {
				Token string   `json:"token"`
				SANs  []string `json:"sans"`
			} `json:"tokens"`
		}
		r.decode(t, &out)
		if len(out.Tokens) != 500 || len(out.Tokens[499].SANs) != 100 || !strings.Contains(out.Tokens[499].SANs[7], "-500.") {
			t.Fatalf("through %s: %d tokens, want 500 with their own names", via.cfg.NodeName, len(out.Tokens))
		}
		// The batch took several entries (more if one was retried: a retry
		// of an entry already committed changes nothing), and minted each
		// token once.
		after, _ := f.Audit(fsm.AuditFilter{Command: "token_create", After: before.Next, Limit: 1000})
		entries := 0
		for _, e := range after.Entries {
			if strings.Contains(e.Note, "tokens=") && e.Outcome == "ok" {
				entries++
			}
		}
		c.WaitConverged()
		if minted := outstanding(t, f) - outstandingBefore; minted != 500 || entries < 20 {
			t.Fatalf("through %s: %d tokens in %d entries, want 500 in 20 or more", via.cfg.NodeName, minted, entries)
		}
		// The last token works on another node.
		other := c.nodes[0]
		if other == via {
			other = c.nodes[1]
		}
		name := out.Tokens[499].SANs[42]
		c.sign(other, out.Tokens[499].Token, newCSR(t, newKey(t), name))
	}

	// 10,000 such tokens would be about 260 MB: refused, nothing minted.
	n := c.Followers()[0]
	c.WaitConverged()
	digest := c.Leader().node.FSM().Digest()
	r := c.do(n, "POST", "/v1/admin/tokens", map[string]any{"sans": names, "count": 10000, "ttl": "1h"}, c.admin)
	if r.status != http.StatusRequestEntityTooLarge || r.errorCode() != "too_large" || !strings.Contains(string(r.body), "MiB") {
		t.Fatalf("10,000 tokens x 100 long names: %d %.300s, want 413 too_large naming the limit", r.status, r.body)
	}
	c.WaitConverged()
	if c.Leader().node.FSM().Digest() != digest {
		t.Fatal("a refused batch changed the state")
	}
}

// outstanding counts the tokens a node holds that can still be used.
func outstanding(t *testing.T, f *fsm.FSM) int {
	t.Helper()
	n := 0
	var cursor []byte
	for {
		toks, next, err := f.OutstandingTokens("", time.Now(), cursor, 1000)
		if err != nil {
			t.Fatal(err)
		}
		n += len(toks)
		if next == nil {
			return n
		}
		cursor = next
	}
}

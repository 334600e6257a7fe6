package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// follow opens an audit follow; cancel ends it.
func (c *testCluster) follow(tn *testNode, query, bearer string) (*http.Response, <-chan fsm.AuditEntry, context.CancelFunc) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+tn.node.APIAddr()+"/v1/admin/audit?follow=true&"+query, nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := c.client.Transport.RoundTrip(req)
	if err != nil {
		cancel()
		c.t.Fatalf("follow: %v", err)
	}
	entries := make(chan fsm.AuditEntry, 1000)
	if resp.StatusCode == http.StatusOK {
		go func() {
			defer close(entries)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var e fsm.AuditEntry
				if json.Unmarshal(sc.Bytes(), &e) == nil {
					entries <- e
				}
			}
		}()
	}
	c.t.Cleanup(func() { cancel(); resp.Body.Close() })
	return resp, entries, cancel
}

func next(t *testing.T, ch <-chan fsm.AuditEntry) fsm.AuditEntry {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("the follow ended")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no entry followed within 10s")
	}
	return fsm.AuditEntry{}
}

// Lists are pages that carry their cursor; a follow starts at the newest
// entry unless asked to start earlier, and a filtered follow reads only
// what it sends, however much else happens.
func TestAuditPagesAndFollows(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	for range 5 {
		c.mintToken(n, "1h", "x.example")
	}
	var seqs []uint64
	var last struct {
		Entries   []fsm.AuditEntry
		More      bool
		NextAfter uint64 `json:"next_after"`
	}
	for after, pages := uint64(0), 0; ; pages++ {
		r := c.do(n, "GET", fmt.Sprintf("/v1/admin/audit?command=token_create&limit=2&after=%d", after), nil, c.admin)
		if r.status != http.StatusOK || pages > 10 {
			t.Fatalf("page %d: %d %s", pages, r.status, r.body)
		}
		last.Entries = nil
		r.decode(t, &last)
		for _, e := range last.Entries {
			seqs = append(seqs, e.Seq)
		}
		after = last.NextAfter
		if !last.More {
			break
		}
	}
	head, _ := n.node.FSM().AuditHead()
	if len(seqs) != 5 || last.NextAfter != head {
		t.Errorf("paged token_create entries %v, ending at %d; want 5 ending at the head %d", seqs, last.NextAfter, head)
	}
	for _, bad := range []string{"after=x", "limit=0", "limit=1001", "after=-1"} {
		if r := c.do(n, "GET", "/v1/admin/audit?"+bad, nil, c.admin); r.status != http.StatusBadRequest || r.errorCode() != "bad_request" {
			t.Errorf("%s: %d %s", bad, r.status, r.body)
		}
	}

	// Without after=, a follow streams what is appended from now on.
	_, all, _ := c.follow(n, "", c.admin)
	// A filtered follow, while 30 other entries are appended, reads only the
	// one it sends.
	_, revokes, _ := c.follow(n, "command=revoke", c.admin)
	h := c.enrollHolder(n, "followed.example")
	before := n.node.FSM().AuditReads()
	for range 30 {
		c.mintToken(n, "1h", "x.example")
	}
	c.do(n, "POST", "/v1/revoke", map[string]string{"serial": h.s.Serial, "reason": "superseded"}, c.admin)
	if e := next(t, revokes); e.Command != "revoke" || !strings.Contains(e.Note, h.s.Serial) {
		t.Errorf("filtered follow sent %+v", e)
	}
	if e := next(t, all); e.Seq != head+1 {
		t.Errorf("the follow began at entry %d, want %d, the first after it started", e.Seq, head+1)
	}
	// The unfiltered follow reads the 34 new entries (and their index keys
	// when it pages); the filtered one 2 records. Before the index, the
	// filtered follow read the whole log at every change.
	if read := n.node.FSM().AuditReads() - before; read > 2*(34+2)+10 {
		t.Errorf("two follows read %d audit records for 34 new entries", read)
	}
}

package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/archive"
	"github.com/quorumca/quorumca/internal/testwait"
)

// Records of certificates expired longer than the retention are archived,
// then removed from every node with their index entries (names, revoked
// list); current ones stay, and the nodes' states stay identical.
func TestRetentionArchivesThenRemovesExpiredRecords(t *testing.T) {
	dir := t.TempDir()
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) {
		c.configure = func(cfg *Config) {
			cfg.Retention, cfg.RetentionInterval, cfg.Archive = time.Hour, 100*time.Millisecond, "file://"+dir
		}
	})
	var old []signed
	for i, name := range []string{"old-a.example", "old-b.example", "old-c.example"} {
		n := c.nodes[i%3]
		old = append(old, c.sign(n, c.mintToken(n, "1h", name), newCSR(t, newKey(t), name)))
	}
	if r := c.do(c.nodes[0], "POST", "/v1/revoke", map[string]string{"serial": old[1].Serial, "reason": "keyCompromise"}, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	// Past the old certificates' life (a day) and the retention.
	c.clock.Advance(26 * time.Hour)
	fresh := c.sign(c.nodes[1], c.mintToken(c.nodes[1], "1h", "fresh.example"), newCSR(t, newKey(t), "fresh.example"))

	testwait.For(t, 20*time.Second, "the old records to be gone from every node", func() bool {
		for _, tn := range c.nodes {
			for _, s := range old {
				if _, err := tn.node.FSM().Cert(s.Serial); !errors.Is(err, fsm.ErrNotFound) {
					return false
				}
			}
		}
		return true
	})
	c.WaitConverged()
	for _, tn := range c.nodes {
		f := tn.node.FSM()
		if _, err := f.Cert(fresh.Serial); err != nil {
			t.Errorf("%s: the current certificate's record is gone: %v", tn.cfg.NodeName, err)
		}
		certs, _, err := f.SearchCerts(fsm.CertQuery{SAN: "old-b.example", Limit: 10, Now: time.Now().Add(-48 * time.Hour)})
		if err != nil || len(certs) != 0 {
			t.Errorf("%s: a removed record is still found by name: %d %v", tn.cfg.NodeName, len(certs), err)
		}
		a, _ := f.Authority("default")
		for _, iss := range a.Issuers {
			revoked, _ := f.Revoked("default", iss.ID, time.Time{})
			for _, e := range revoked {
				if e.Serial == old[1].Serial {
					t.Errorf("%s: the removed record is still in the revoked list", tn.cfg.NodeName)
				}
			}
		}
	}
	if r := c.do(c.nodes[2], "GET", "/v1/certs/"+old[0].Serial, nil, c.admin); r.status != http.StatusNotFound {
		t.Errorf("a removed record: %d %s", r.status, r.body)
	}

	// The archive holds each removed record whole, revocation included.
	store, err := archive.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	names, err := store.List(context.Background(), "certs/")
	if err != nil || len(names) == 0 {
		t.Fatalf("archive: %q %v", names, err)
	}
	archived := map[string]fsm.Cert{}
	for _, name := range names {
		data, err := store.Get(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := archive.Gunzip(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			var rec fsm.Cert
			if err := json.Unmarshal(l, &rec); err != nil {
				t.Fatal(err)
			}
			archived[rec.Serial] = rec
		}
	}
	for i, s := range old {
		rec, ok := archived[s.Serial]
		if !ok || len(rec.DER) == 0 || !slices.Equal(rec.SANs, []string{[]string{"old-a.example", "old-b.example", "old-c.example"}[i]}) {
			t.Errorf("record %s archived as %+v (%v)", s.Serial, rec, ok)
		}
	}
	if rec := archived[old[1].Serial]; !rec.Revoked() {
		t.Error("the archived record of the revoked certificate does not say so")
	}
	if _, ok := archived[fresh.Serial]; ok {
		t.Error("a current certificate was archived")
	}
}

// Audit entries older than the audit retention are archived, then cut
// from every node's state behind a checkpoint signed by the cluster CA
// key: the kept chain verifies from the checkpoint on every node, the
// archive verifies from the first entry to the checkpoint, and an archive
// with an entry changed does not.
func TestAuditRetentionKeepsTheWholeHistoryProvable(t *testing.T) {
	dir := t.TempDir()
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) {
		c.configure = func(cfg *Config) {
			cfg.AuditRetention, cfg.RetentionInterval, cfg.Archive = time.Hour, 100*time.Millisecond, "file://"+dir
		}
	})
	for i := range 3 {
		c.mintToken(c.nodes[i], "1h", "a.example")
	}
	before, _ := c.nodes[0].node.FSM().AuditHead()
	c.clock.Advance(2 * time.Hour)
	c.mintToken(c.nodes[1], "1h", "b.example") // a newer entry: the head stays

	var cp *fsm.AuditCheckpoint
	testwait.For(t, 20*time.Second, "every node to cut its audit log", func() bool {
		for _, tn := range c.nodes {
			got, err := tn.node.FSM().AuditCheckpoint()
			if err != nil || got == nil || got.Seq < before {
				return false
			}
			cp = got
		}
		return true
	})
	c.WaitConverged()
	want := c.nodes[0].node.Cluster().CAFingerprint()
	if fp, err := fsm.VerifyCheckpoint(*cp); err != nil || fp != want {
		t.Fatalf("checkpoint signed by %q (%v), want the cluster CA %s", fp, err, want)
	}
	for _, tn := range c.nodes {
		if n, err := tn.node.FSM().VerifyAudit(); err != nil || n == 0 {
			t.Errorf("%s: the kept chain: %d entries, %v", tn.cfg.NodeName, n, err)
		}
	}
	// Through the API, the first page carries the checkpoint.
	var page struct {
		Entries    []fsm.AuditEntry     `json:"entries"`
		Checkpoint *fsm.AuditCheckpoint `json:"checkpoint"`
	}
	c.do(c.nodes[2], "GET", "/v1/admin/audit?limit=1", nil, c.admin).decode(t, &page)
	if page.Checkpoint == nil || len(page.Entries) != 1 || page.Entries[0].Prev != page.Checkpoint.Hash {
		t.Fatalf("first page: %+v", page)
	}

	ctx := context.Background()
	store, err := archive.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	// The archive may run past the state's checkpoint while a later cut
	// is on its way; it proves the history up to the checkpoint.
	if n, err := fsm.VerifyAuditArchive(ctx, store, cp); err != nil || n != cp.Seq {
		t.Fatalf("archive: verified to %d (%v), want %d", n, err, cp.Seq)
	}
	names, _ := store.List(ctx, "audit/")
	data, _ := store.Get(ctx, names[0])
	lines, _ := archive.Gunzip(data)
	var e fsm.AuditEntry
	json.Unmarshal(lines[1], &e)
	e.Actor = "someone else"
	lines[1], _ = json.Marshal(e)
	if err := store.Put(ctx, names[0], archive.Gzip(lines)); err != nil {
		t.Fatal(err)
	}
	if _, err := fsm.VerifyAuditArchive(ctx, store, cp); !errors.Is(err, fsm.ErrAuditBroken) {
		t.Fatalf("an archived entry changed: %v", err)
	}
}

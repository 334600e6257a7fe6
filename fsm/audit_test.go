package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// entryBy is a log entry whose envelope names an actor, as the API's are.
func (b *logBuilder) entryBy(actor string, typ CmdType, payload any) *raft.Log {
	b.t.Helper()
	env, err := NewEnvelope(typ, fmt.Sprintf("req-%d", b.index+1), payload)
	if err != nil {
		b.t.Fatal(err)
	}
	env.Time = t0.UnixNano()
	if actor != "" {
		env.Origin = &Origin{Actor: actor, Remote: "192.0.2.1"}
	}
	data, err := env.Encode()
	if err != nil {
		b.t.Fatal(err)
	}
	b.index++
	return &raft.Log{Index: b.index, Term: 1, Type: raft.LogCommand, Data: data}
}

// busyLog applies n node upserts by the system, in batches.
func busyLog(t *testing.T, f *FSM, b *logBuilder, n int) {
	t.Helper()
	for i := 0; i < n; {
		var logs []*raft.Log
		for ; i < n && len(logs) < 1000; i++ {
			logs = append(logs, b.entryBy("node:n1", CmdNodeUpsert, Node{ID: "n1", APIAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}))
		}
		f.ApplyBatch(logs)
	}
}

// A filtered query that matches nothing, and a follower of such a filter
// woken by every change, read what they return, not the whole log.
func TestAuditQueriesReadOnlyWhatTheyReturn(t *testing.T) {
	f := openTest(t)
	b := &logBuilder{t: t}
	const n = 10000
	busyLog(t, f, b, n)

	before := f.AuditReads()
	p, err := f.Audit(AuditFilter{Command: "revoke", Limit: 100})
	if err != nil || len(p.Entries) != 0 || p.More || p.Next != n {
		t.Fatalf("%d entries, more %v, next %d, %v", len(p.Entries), p.More, p.Next, err)
	}
	if read := f.AuditReads() - before; read > 2 {
		t.Errorf("a query matching nothing read %d audit records of a %d-entry log", read, n)
	}

	// A follower of revocations, woken by 10 changes of which one is one.
	after := p.Next
	before = f.AuditReads()
	var got []AuditEntry
	for i := range 10 {
		if i == 5 {
			f.ApplyBatch([]*raft.Log{b.entryBy("admin:ann/1", CmdRevoke, Revoke{Serial: "01", Reason: 1})})
		} else {
			busyLog(t, f, b, 1)
		}
		p, _ := f.Audit(AuditFilter{After: after, Command: "revoke", Limit: 100})
		got, after = append(got, p.Entries...), p.Next
	}
	if len(got) != 1 || got[0].Seq != n+6 {
		t.Fatalf("the follower got %+v", got)
	}
	if read := f.AuditReads() - before; read > 2 {
		t.Errorf("a follower read %d audit records over 10 changes to return 1 entry", read)
	}

	// A page reads its entries and one index key past them.
	before = f.AuditReads()
	p, _ = f.Audit(AuditFilter{Actor: "node:n1", After: 500, Limit: 100})
	if len(p.Entries) != 100 || !p.More || p.Next != 600 || p.Entries[0].Seq != 501 {
		t.Fatalf("page: %d entries from %d, more %v, next %d", len(p.Entries), p.Entries[0].Seq, p.More, p.Next)
	}
	if read := f.AuditReads() - before; read > 2*100+1 {
		t.Errorf("a page of 100 read %d audit records", read)
	}
}

// mixedLog applies entries of several commands and actors, some without
// an actor, one with an actor longer than an index key holds whole.
func mixedLog(t *testing.T, f *FSM, b *logBuilder) {
	t.Helper()
	long := "provisioner:p jwt:" + strings.Repeat("x", 1000)
	actors := []string{"admin:ann/1", "admin:bob/2", "", long, "node:n1"}
	var logs []*raft.Log
	for i := range 200 {
		actor := actors[i%len(actors)]
		switch i % 3 {
		case 0:
			logs = append(logs, b.entryBy(actor, CmdNodeUpsert, Node{ID: "n1", APIAddr: "a", RaftAddr: "r"}))
		case 1:
			logs = append(logs, b.entryBy(actor, CmdRevoke, Revoke{Serial: fmt.Sprintf("%x", i), Reason: 1}))
		default:
			logs = append(logs, b.entryBy(actor, CmdTokenRevoke, TokenRevoke{ID: "nope"})) // refused: audited all the same
		}
	}
	f.ApplyBatch(logs)
}

// Every filter, paged with any limit, yields exactly the matching entries
// of a full read, in order, and ends where the log ends.
func TestAuditPagesMatchAFullScan(t *testing.T) {
	f := openTest(t)
	b := &logBuilder{t: t}
	mixedLog(t, f, b)
	all, err := f.Audit(AuditFilter{Limit: MaxAuditLimit})
	if err != nil || len(all.Entries) != 200 || all.More || all.Next != 200 {
		t.Fatalf("full read: %d entries, more %v, next %d, %v", len(all.Entries), all.More, all.Next, err)
	}
	long := "provisioner:p jwt:" + strings.Repeat("x", 1000)
	for _, q := range []AuditFilter{
		{}, {Command: "revoke"}, {Actor: "admin:ann/1"}, {Command: "token_revoke", Actor: "admin:bob/2"},
		{Actor: long}, {Command: "node_upsert", Actor: long}, {Command: "issue"}, {Actor: "admin:ann"},
		{Actor: long[:len(long)-1]},
	} {
		var want []uint64
		for _, e := range all.Entries {
			if (q.Command == "" || e.Command == q.Command) && (q.Actor == "" || e.Actor == q.Actor) {
				want = append(want, e.Seq)
			}
		}
		for _, limit := range []int{1, 7, 100} {
			var got []uint64
			q := q
			q.Limit, q.After = limit, 0
			for pages := 0; ; pages++ {
				p, err := f.Audit(q)
				if err != nil || pages > 300 {
					t.Fatalf("%+v: %v after %d pages", q, err, pages)
				}
				for _, e := range p.Entries {
					got = append(got, e.Seq)
				}
				if len(p.Entries) > limit || (p.More && len(p.Entries) != limit) {
					t.Fatalf("%+v: %d entries, more %v", q, len(p.Entries), p.More)
				}
				q.After = p.Next
				if !p.More {
					break
				}
			}
			if !slices.Equal(got, want) || q.After != 200 {
				t.Errorf("command %q actor %.20q limit %d: got %v ending at %d, want %v", q.Command, q.Actor, limit, got, q.After, want)
			}
		}
	}
	if p, _ := f.Audit(AuditFilter{Limit: 5000}); len(p.Entries) != 200 {
		t.Errorf("limit above the maximum: %d entries", len(p.Entries))
	}
	if p, _ := f.Audit(AuditFilter{After: 900}); len(p.Entries) != 0 || p.Next != 900 {
		t.Errorf("after the end: %d entries, next %d", len(p.Entries), p.Next)
	}
}

func bucketDump(t *testing.T, f *FSM, name []byte) string {
	t.Helper()
	var out bytes.Buffer
	f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(name).ForEach(func(k, v []byte) error {
			fmt.Fprintf(&out, "%x=%x\n", k, v)
			return nil
		})
	})
	return out.String()
}

// forgetIndex turns f's file into what an older binary leaves: the log
// without its index. f is closed; the path is returned.
func forgetIndex(t *testing.T, f *FSM) string {
	t.Helper()
	err := f.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bAuditIndex); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Delete(kAuditIndexed)
	})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return f.Path()
}

// Entries appended before the index existed are indexed when the state is
// opened, in chunks, into the index that applying them builds; a snapshot
// from an older node gets its index when restored.
func TestAuditIndexBackfill(t *testing.T) {
	defer func(n int) { backfillChunk = n }(backfillChunk)
	backfillChunk = 7

	built := openTest(t)
	mixedLog(t, built, &logBuilder{t: t})
	want := bucketDump(t, built, bAuditIndex)
	if strings.Count(want, "\n") != 200+160 {
		t.Fatalf("index of 200 entries, 160 with an actor: %d keys", strings.Count(want, "\n"))
	}

	old, err := Open(filepath.Join(t.TempDir(), "old.db"))
	if err != nil {
		t.Fatal(err)
	}
	mixedLog(t, old, &logBuilder{t: t})
	path := forgetIndex(t, old)
	snap, err := os.ReadFile(path) // a snapshot is the database file
	if err != nil {
		t.Fatal(err)
	}
	reopened, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	if got := bucketDump(t, reopened, bAuditIndex); got != want {
		t.Error("the backfilled index differs from the one built by applying")
	}
	if n, err := reopened.VerifyAudit(); err != nil || n != 200 {
		t.Errorf("verify after backfill: %d, %v", n, err)
	}
	p, _ := reopened.Audit(AuditFilter{Command: "revoke", Actor: "admin:bob/2", Limit: 1000})
	if len(p.Entries) == 0 {
		t.Error("no entry found through the backfilled index")
	}
	// Later entries are indexed as they are applied, after the backfilled ones.
	reopened.ApplyBatch([]*raft.Log{(&logBuilder{t: t, index: 1000}).entryBy("admin:bob/2", CmdRevoke, Revoke{Serial: "ff", Reason: 1})})
	if p2, _ := reopened.Audit(AuditFilter{Command: "revoke", Actor: "admin:bob/2", After: p.Next}); len(p2.Entries) != 1 {
		t.Errorf("new entry through the index: %d", len(p2.Entries))
	}
	if n, err := reopened.VerifyAudit(); err != nil || n != 201 {
		t.Errorf("verify after a new entry: %d, %v", n, err)
	}

	// The unindexed snapshot, restored: indexed before it is swapped in.
	r := openTest(t)
	if err := r.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if got := bucketDump(t, r, bAuditIndex); got != want {
		t.Error("the index of a restored older snapshot differs")
	}
	if _, err := r.VerifyAudit(); err != nil {
		t.Error(err)
	}
}

// Changing the index is as detectable as changing the log: a removed key
// would hide an entry from filtered reads, an added one would invent one.
func TestAuditIndexTamperingIsDetected(t *testing.T) {
	for name, fn := range map[string]func(tx *bolt.Tx) error{
		"remove": func(tx *bolt.Tx) error {
			return tx.Bucket(bAuditIndex).Delete(append(auditIndexPrefix("revoke", ""), seqKey(2)...))
		},
		"add": func(tx *bolt.Tx) error {
			return tx.Bucket(bAuditIndex).Put(append(auditIndexPrefix("revoke", ""), seqKey(3)...), nil)
		},
		"move": func(tx *bolt.Tx) error {
			b := tx.Bucket(bAuditIndex)
			if err := b.Delete(append(auditIndexPrefix("", "admin:bob/2"), seqKey(2)...)); err != nil {
				return err
			}
			return b.Put(append(auditIndexPrefix("", "admin:ann/1"), seqKey(2)...), nil)
		},
		"unmark": func(tx *bolt.Tx) error {
			return tx.Bucket(bMeta).Delete(kAuditIndexed)
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := openTest(t)
			mixedLog(t, f, &logBuilder{t: t})
			if n, err := f.VerifyAudit(); err != nil || n != 200 {
				t.Fatalf("before: %d, %v", n, err)
			}
			if err := f.db.Update(fn); err != nil {
				t.Fatal(err)
			}
			if _, err := f.VerifyAudit(); !errors.Is(err, ErrAuditBroken) {
				t.Errorf("tampering (%s) not detected: %v", name, err)
			}
		})
	}
}

// The log and its index do not depend on how entries were batched.
func TestAuditIndexDeterministicAcrossBatching(t *testing.T) {
	logs := workload(t)
	a, b := openTest(t), openTest(t)
	a.ApplyBatch(logs)
	for i := 0; i < len(logs); i += 3 {
		b.ApplyBatch(logs[i:min(i+3, len(logs))])
	}
	for _, name := range [][]byte{bAudit, bAuditIndex} {
		if bucketDump(t, a, name) != bucketDump(t, b, name) {
			t.Errorf("same log, different %s", name)
		}
	}
}

// Actors of their own (one certificate, one token each) are filed under a
// principal, so their keys are appended, not scattered; a query for one
// still returns only its entries, and one that must look past many keys of
// the principal pages instead of walking them all.
func TestAuditActorsOfTheirOwnShareAPrincipal(t *testing.T) {
	if got := auditPrincipal("provisioner:fleet token:9c1d"); got != "provisioner:fleet" {
		t.Errorf("principal of a token's actor: %q", got)
	}
	if got := auditPrincipal("cert:5e0a"); got != "cert:" {
		t.Errorf("principal of a certificate's actor: %q", got)
	}
	f := openTest(t)
	b := &logBuilder{t: t}
	var logs []*raft.Log
	for i := range 300 {
		logs = append(logs, b.entryBy(fmt.Sprintf("cert:%04x", i), CmdRevoke, Revoke{Serial: fmt.Sprintf("%x", i), Reason: 1}))
	}
	f.ApplyBatch(logs)
	p, err := f.Audit(AuditFilter{Actor: "cert:0107", Limit: 100})
	if err != nil || len(p.Entries) != 1 || p.Entries[0].Actor != "cert:0107" || p.More {
		t.Fatalf("one certificate's entries: %+v more %v %v", p.Entries, p.More, err)
	}
	p, err = f.Audit(AuditFilter{Actor: "cert:0107", Command: "node_upsert", Limit: 100})
	if err != nil || len(p.Entries) != 0 {
		t.Fatalf("its entries of another command: %+v %v", p.Entries, err)
	}

	defer func(n int) { maxAuditScan = n }(maxAuditScan)
	maxAuditScan = 50
	var got []AuditEntry
	pages := 0
	for after := uint64(0); ; pages++ {
		before := f.AuditReads()
		p, err := f.Audit(AuditFilter{Actor: "cert:0107", After: after, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if read := f.AuditReads() - before; read > 50+1+2 {
			t.Fatalf("page %d looked at %d keys and entries, want at most the scan bound", pages, read)
		}
		got = append(got, p.Entries...)
		if !p.More {
			break
		}
		after = p.Next
	}
	if len(got) != 1 || got[0].Actor != "cert:0107" || pages+1 < 300/50 {
		t.Fatalf("paging past the scan bound: %d entries in %d pages", len(got), pages+1)
	}
}

package fsm

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Retention removes most records; bolt keeps the file at its largest.
// Compact gives the space back, refuses while a node holds the file, and
// leaves the state, its applied index and its log format as they were.
func TestCompactGivesBackTheSpaceOfRemovedRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b := &logBuilder{t: t}
	must := func(logs ...*raft.Log) {
		t.Helper()
		for i, r := range f.ApplyBatch(logs) {
			if r != nil {
				t.Fatalf("entry %d: %v", logs[i].Index, r)
			}
		}
	}
	must(b.entry(CmdAuthorityPut, t0, authority()), b.entry(CmdLogFormat, t0, LogFormatMark{Format: LogFormat}))
	var expired []string
	for n := 0; n < 3000; {
		var logs []*raft.Log
		for range 100 {
			c := cert(fmt.Sprintf("%06d", n), fmt.Sprintf("d%d.example", n))
			c.DER = make([]byte, 1500)
			rand.Read(c.DER) // incompressible, like a signature
			if n%30 == 0 {
				c.NotAfter = t0.Add(72 * time.Hour) // one in 30 outlives the prune
			} else {
				expired = append(expired, c.Serial)
			}
			key := hashOf(c.Serial)
			logs = append(logs, b.entry(CmdIssue, t0, Issue{OneTime: &OneTime{Key: key, Expires: t0.Add(time.Hour)}, Cert: c}))
			n++
		}
		must(logs...)
	}
	later := t0.Add(48 * time.Hour)
	must(b.entry(CmdTokenPrune, later, TokenPrune{Before: later}))
	for lo := 0; lo < len(expired); lo += MaxPruneBatch {
		must(b.entry(CmdCertPrune, later, CertPrune{Before: t0.Add(25 * time.Hour), Serials: expired[lo:min(lo+MaxPruneBatch, len(expired))]}))
	}
	if got := f.CertCount(); got != 100 {
		t.Fatalf("%d records left, want 100", got)
	}
	digest, applied, format := f.Digest(), f.AppliedIndex(), f.HighestLogFormat()
	held, _ := os.Stat(path)

	if _, _, err := Compact(path); err == nil || !strings.Contains(err.Error(), "stop the node first") {
		t.Fatalf("compact while the node runs: %v", err)
	}
	if st, _ := os.Stat(path); st.Size() != held.Size() || !st.ModTime().Equal(held.ModTime()) {
		t.Fatal("a refused compaction touched the file")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	before, after, err := Compact(path)
	if err != nil {
		t.Fatal(err)
	}
	if before != held.Size() || after*4 > before {
		t.Errorf("file %d -> %d bytes, want a quarter or less", before, after)
	}
	t.Logf("file %d -> %d bytes", before, after)
	if _, err := os.Stat(path + ".compact"); !os.IsNotExist(err) {
		t.Errorf("the copy is left beside the state: %v", err)
	}

	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Digest() != digest || g.AppliedIndex() != applied || g.HighestLogFormat() != format {
		t.Fatalf("state after compaction: applied %d (want %d), format %d (want %d), digest changed %v",
			g.AppliedIndex(), applied, g.HighestLogFormat(), format, g.Digest() != digest)
	}
	// It takes new entries as before.
	f = g
	c := cert("999999", "new.example")
	must(b.entry(CmdIssue, later, Issue{OneTime: &OneTime{Key: hashOf("new"), Expires: later.Add(time.Hour)}, Cert: c}))
	if _, err := g.Cert("999999"); err != nil {
		t.Fatal(err)
	}

	if _, _, err := Compact(filepath.Join(t.TempDir(), "nothing.db")); err == nil {
		t.Error("compacting a missing file succeeded")
	}
}

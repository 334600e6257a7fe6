package bench

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// A small scale run: every record and revocation lands in the database,
// the CRL lists exactly the revoked ones, and three nodes elect a leader
// on the state and again after losing it.
func TestFSMScaleRun(t *testing.T) {
	dir := t.TempDir()
	const records, revoked = 3000, 300
	res, err := FSM(context.Background(), FSMConfig{Dir: dir, Records: records, Revoked: revoked, Batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != records || res.RevokedEntries != revoked || res.Nodes != 3 {
		t.Errorf("result: %+v", res)
	}
	if len(res.Memory) != 11 || res.Memory[9].Records != records || res.BoltMiB <= 0 || res.SnapshotMiB <= 0 {
		t.Errorf("memory points: %+v", res.Memory)
	}
	if res.StartSeconds <= 0 || res.FailoverSeconds <= 0 || res.RestoreSeconds <= 0 || res.JoinSeconds <= 0 {
		t.Errorf("timings: start %v failover %v restore %v new member %v", res.StartSeconds, res.FailoverSeconds, res.RestoreSeconds, res.JoinSeconds)
	}
	// n1 loaded the state, n2 and n3 restored it from n1's snapshot; the
	// first leader was replaced after the failover (its disk is gone) by
	// n4, which raft brought up to date with a snapshot.
	var kept []string
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			kept = append(kept, n)
		}
	}
	if len(kept) != 3 || kept[2] != "n4" {
		t.Errorf("nodes left: %v, want two of n1-n3 and n4", kept)
	}
	for _, n := range kept {
		f, err := fsm.Open(filepath.Join(dir, n, "fsm.db"))
		if err != nil {
			t.Fatal(err)
		}
		if got := f.CertCount(); got != records {
			t.Errorf("%s holds %d records, want %d", n, got, records)
		}
		a, err := f.Authority(authority.DefaultAuthority)
		if err != nil {
			t.Fatal(err)
		}
		crl, err := f.CRL(authority.DefaultAuthority, a.Issuers[0].ID)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		rl, err := x509.ParseRevocationList(crl.DER)
		if err != nil {
			t.Fatal(err)
		}
		if len(rl.RevokedCertificateEntries) != revoked {
			t.Errorf("%s: CRL lists %d, want %d", n, len(rl.RevokedCertificateEntries), revoked)
		}
		f.Close()
	}
}

// With the CRL partitioned, the shards together list every revoked record
// once, each within its share.
func TestFSMScaleRunBuildsCRLShards(t *testing.T) {
	const records, revoked, shards = 2000, 400, 8
	res, err := FSM(context.Background(), FSMConfig{Dir: t.TempDir(), Records: records, Revoked: revoked, Batch: 100, CRLShards: shards, NoCluster: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.CRLShards != shards || res.CRLRefused != "" || res.ShardsEntries != revoked || res.ShardsKiB <= res.CRLKiB*0.9 {
		t.Fatalf("result: %+v", res)
	}
	// Serials are random: a shard holding over twice its share would say
	// they are not spread by their value.
	if res.ShardMaxEntries < revoked/shards || res.ShardMaxEntries > 2*revoked/shards {
		t.Errorf("largest shard %d entries of %d revoked in %d shards", res.ShardMaxEntries, revoked, shards)
	}
}

// A fleet renewing for a simulated week with retention: once the first
// records pass their retention, as many records are removed and audit
// entries cut each day as come, so the number of records stays flat and
// so does what the state holds (the file less bolt's free pages), per
// record and in all.
func TestChurnKeepsTheRecordsBounded(t *testing.T) {
	res, err := Churn(context.Background(), ChurnConfig{Dir: t.TempDir(), Devices: 1500, Days: 7, Batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Points) != 7 {
		t.Fatalf("points: %+v", res.Points)
	}
	// Lifetime 24h, renewed every 16h, kept 48h after expiry: from day 4
	// on, a record leaves for each one that comes.
	steady := res.Points[3].Records
	for _, p := range res.Points[3:] {
		if p.Records != steady || p.Removed == 0 {
			t.Errorf("day %.0f: %d records (%d removed), want %d", p.Hours/24, p.Records, p.Removed, steady)
		}
	}
	if last := res.Points[6]; last.Issued-last.Removed != last.Records {
		t.Errorf("issued %d - removed %d != %d records", last.Issued, last.Removed, last.Records)
	}
	live := func(p ChurnPoint) float64 { return p.BoltMiB - p.FreeMiB }
	if first, last := res.Points[3], res.Points[6]; live(last) > live(first)*1.05 {
		t.Errorf("what the state holds grew from %.1f MiB on day 4 to %.1f MiB on day 7", live(first), live(last))
	}
}

package fsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// signedCheckpoint is the checkpoint at entry e, signed by key.
func signedCheckpoint(t *testing.T, e AuditEntry, key *ecdsa.PrivateKey) AuditCheckpoint {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	cp := AuditCheckpoint{Seq: e.Seq, Hash: e.Hash, Time: e.Time, Key: spki}
	if cp.Signature, err = key.Sign(rand.Reader, CheckpointDigest(cp), crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	return cp
}

// Cutting the audit log removes the oldest entries and their index keys,
// keeps a signed checkpoint, and leaves a chain that verifies from it; a
// checkpoint that names another entry, is not signed by its key, or
// would remove the newest entry is refused and changes nothing; the same
// cut applied again is a no-op; and the chain still breaks where an entry
// is changed after the cut.
func TestAuditCutKeepsAVerifiableChain(t *testing.T) {
	f := openTest(t)
	logs := workload(t)
	f.ApplyBatch(logs)
	b := &logBuilder{t: t, index: uint64(len(logs))}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	page, err := f.AuditBefore(t0.Add(90*time.Minute), 100)
	if err != nil || len(page) < 10 {
		t.Fatalf("entries before the horizon: %d %v", len(page), err)
	}
	total, _ := f.VerifyAudit()
	at := page[9] // cut the first ten
	cp := signedCheckpoint(t, at, key)

	forged := cp
	forged.Hash = page[8].Hash
	unsigned := cp
	unsigned.Signature = append([]byte{}, cp.Signature...)
	unsigned.Signature[10] ^= 1
	newest := func() AuditCheckpoint {
		seq, _ := f.AuditHead()
		p, _ := f.Audit(AuditFilter{After: seq - 1, Limit: 1})
		return signedCheckpoint(t, p.Entries[0], key)
	}
	nowhere := func() AuditCheckpoint {
		seq, _ := f.AuditHead()
		return AuditCheckpoint{Seq: seq + 5, Hash: "x", Key: cp.Key, Signature: cp.Signature}
	}
	for name, bad := range map[string]func() AuditCheckpoint{
		"names another entry":   func() AuditCheckpoint { return forged },
		"not signed by its key": func() AuditCheckpoint { return unsigned },
		"cuts the newest entry": newest,
		"names no entry at all": nowhere,
	} {
		before := f.Digest()
		res := f.ApplyBatch([]*raft.Log{b.entry(CmdAuditCut, t0.Add(3*time.Hour), AuditCut{Checkpoint: bad()})})
		if err, _ := res[0].(error); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, res[0])
		}
		if f.Digest() != before {
			t.Errorf("%s: the refused cut changed the state", name)
		}
	}
	if n, err := f.VerifyAudit(); err != nil || n != total+4 {
		t.Fatalf("before the cut: %d entries, %v", n, err)
	}
	if err, _ := f.ApplyBatch([]*raft.Log{b.entry(CmdAuditCut, t0.Add(3*time.Hour), AuditCut{Checkpoint: cp})})[0].(error); err != nil {
		t.Fatal(err)
	}
	n, err := f.VerifyAudit()
	if err != nil || n != total+5-10 {
		t.Fatalf("after the cut: %d entries, %v; want %d", n, err, total+5-10)
	}
	got, err := f.AuditCheckpoint()
	if err != nil || got == nil || got.Seq != at.Seq || got.Hash != at.Hash {
		t.Fatalf("checkpoint %+v %v", got, err)
	}
	if fp, err := VerifyCheckpoint(*got); err != nil || len(fp) != 64 {
		t.Fatalf("checkpoint verifies: %q %v", fp, err)
	}
	if p, _ := f.Audit(AuditFilter{Limit: 1}); len(p.Entries) != 1 || p.Entries[0].Seq != at.Seq+1 || p.Entries[0].Prev != at.Hash {
		t.Fatalf("the kept chain starts with %+v", p.Entries)
	}
	if p, _ := f.Audit(AuditFilter{Command: page[0].Command}); len(p.Entries) > 0 && p.Entries[0].Seq <= at.Seq {
		t.Errorf("the index still lists a cut entry: %d", p.Entries[0].Seq)
	}
	again := f.ApplyBatch([]*raft.Log{b.entry(CmdAuditCut, t0.Add(3*time.Hour), AuditCut{Checkpoint: cp})})
	if err, _ := again[0].(error); err != nil {
		t.Errorf("the same cut again: %v", err)
	}
	if n2, err := f.VerifyAudit(); err != nil || n2 != n+1 {
		t.Errorf("after the repeated cut: %d %v", n2, err)
	}
}

package authority

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/archive"
)

// Retention keeps the state bounded for a fleet that renews forever: the
// records of certificates expired longer than the retention are archived
// (when a store is set) and then removed through the log, a bounded batch
// per entry. Nothing is removed that was not archived first.

// DefaultRetention is how long records of expired certificates are kept.
const DefaultRetention = 30 * 24 * time.Hour

// pruneBatch is how many records one retention round archives and
// removes.
const pruneBatch = fsm.MaxPruneBatch

// PruneExpired archives and removes one batch of records of certificates
// expired longer than retention (and than any provisioner's renewal grace:
// a record that may still be renewed stays). It returns how many it
// removed; pruneBatch means there may be more.
func (ca *CA) PruneExpired(ctx context.Context, retention time.Duration, store archive.Store) (int, error) {
	before := ca.now().Add(-retention - ca.maxRenewGrace())
	recs, err := ca.state.ExpiredCerts(before, pruneBatch)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	if store != nil {
		if err := archiveCerts(ctx, store, recs); err != nil {
			return 0, fmt.Errorf("retention: archive to %s: %w; nothing removed", store, err)
		}
	}
	serials := make([]string, len(recs))
	for i := range recs {
		serials[i] = recs[i].Serial
	}
	if err := ca.propose(ctx, fsm.CmdCertPrune, fsm.CertPrune{Before: before, Serials: serials}); err != nil {
		return 0, err
	}
	return len(recs), nil
}

// maxRenewGrace is the longest renewal grace of any provisioner.
func (ca *CA) maxRenewGrace() time.Duration {
	ps, err := ca.state.Provisioners()
	if err != nil {
		return 0
	}
	var g time.Duration
	for _, p := range ps {
		g = max(g, p.Policy.RenewGrace)
	}
	return g
}

// archiveCerts writes records as gzipped JSON lines, one object per day
// of expiry: certs/YYYY/MM/DD/{first expiry, ns}-{first serial}.jsonl.gz.
// A batch is the same records when retried after a failure (the longest
// expired first), so it lands under the same names.
func archiveCerts(ctx context.Context, store archive.Store, recs []fsm.Cert) error {
	for start := 0; start < len(recs); {
		day := recs[start].NotAfter.UTC().Format("2006/01/02")
		end := start
		var lines [][]byte
		for ; end < len(recs) && recs[end].NotAfter.UTC().Format("2006/01/02") == day; end++ {
			b, err := json.Marshal(&recs[end])
			if err != nil {
				return err
			}
			lines = append(lines, b)
		}
		name := fmt.Sprintf("certs/%s/%d-%s.jsonl.gz", day, recs[start].NotAfter.UnixNano(), recs[start].Serial)
		if err := store.Put(ctx, name, archive.Gzip(lines)); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// DefaultAuditRetention is how long audit entries stay in the state.
const DefaultAuditRetention = 90 * 24 * time.Hour

// CheckpointSigner signs audit checkpoints: the cluster CA key.
type CheckpointSigner interface {
	Public() crypto.PublicKey
	Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

// CutAudit archives (when a store is set) and then cuts from the state one
// segment of audit entries older than retention, leaving a checkpoint
// signed by key. It returns how many entries it cut; fsm.MaxAuditCut
// means there may be more.
func (ca *CA) CutAudit(ctx context.Context, retention time.Duration, store archive.Store, key CheckpointSigner) (int, error) {
	entries, err := ca.state.AuditBefore(ca.now().Add(-retention), fsm.MaxAuditCut)
	if err != nil || len(entries) == 0 {
		return 0, err
	}
	last := entries[len(entries)-1]
	if store != nil {
		lines := make([][]byte, len(entries))
		for i := range entries {
			if lines[i], err = json.Marshal(&entries[i]); err != nil {
				return 0, err
			}
		}
		if err := store.Put(ctx, AuditSegmentName(entries[0].Seq, last.Seq), archive.Gzip(lines)); err != nil {
			return 0, fmt.Errorf("audit retention: archive to %s: %w; nothing cut", store, err)
		}
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return 0, err
	}
	cp := fsm.AuditCheckpoint{Seq: last.Seq, Hash: last.Hash, Time: last.Time, Key: spki}
	if cp.Signature, err = key.Sign(rand.Reader, fsm.CheckpointDigest(cp), crypto.SHA256); err != nil {
		return 0, fmt.Errorf("audit retention: sign the checkpoint: %w", err)
	}
	if err := ca.propose(ctx, fsm.CmdAuditCut, fsm.AuditCut{Checkpoint: cp}); err != nil {
		return 0, err
	}
	return len(entries), nil
}

// AuditSegmentName is where a segment of the audit log is archived: its
// first and last sequence numbers, zero-padded so names sort in order.
func AuditSegmentName(first, last uint64) string {
	return fmt.Sprintf("audit/%020d-%020d.jsonl.gz", first, last)
}

package authority

import (
	"context"
	"encoding/json"
	"fmt"
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

package authority

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// Shards are set through UpdateAuthority within bounds; a CRL over the
// most one CRL lists is refused with what to do, and the shards, each a
// part of it, are still signed.
func TestCRLOverOneCRLsSizeIsRefusedAndShardsStillSigned(t *testing.T) {
	ctx := context.Background()
	reads := &revokedReads{}
	c := newTestCAWith(t, func(cfg *Config) {
		cfg.MaxCRLEntries = 2
		reads.State = cfg.State
		cfg.State = reads
	})
	for _, bad := range []int{-1, MaxCRLShards + 1} {
		if _, err := c.UpdateAuthority(ctx, UpdateRequest{Name: DefaultAuthority, CRLShards: &bad}); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("shards %d: %v", bad, err)
		}
	}
	shards := 2
	a, err := c.UpdateAuthority(ctx, UpdateRequest{Name: DefaultAuthority, CRLShards: &shards})
	if err != nil || a.Issuers[0].CRLShards != 2 || a.CRL.Validity != 0 {
		t.Fatalf("update: %v %+v", err, a)
	}
	for _, name := range []string{"a.example", "b.example", "c.example", "d.example", "e.example"} {
		leaf, _ := c.issued(t, name)
		if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(leaf.SerialNumber), Admin: c.admin}); err != nil {
			t.Fatal(err)
		}
	}
	err = c.RefreshStaleCRLs(ctx)
	if !errors.Is(err, ErrCRLTooLarge) || !strings.Contains(err.Error(), "would list 5 certificates") || !strings.Contains(err.Error(), "shards") {
		t.Fatalf("refresh: %v", err)
	}
	iss := a.Issuers[0]
	// The complete list, found too large, is not read again before the
	// CRL's refresh period: the leader asks every CRL interval.
	before := reads.of(iss.ID)
	if err := c.RefreshStaleCRLs(ctx); !errors.Is(err, ErrCRLTooLarge) || reads.of(iss.ID) != before {
		t.Fatalf("second refresh: %v; the complete list read %d more times", err, reads.of(iss.ID)-before)
	}
	c.clock.Advance(DefaultCRLRefresh + time.Second)
	if err := c.RefreshStaleCRLs(ctx); !errors.Is(err, ErrCRLTooLarge) || reads.of(iss.ID) != before+1 {
		t.Fatalf("refresh a period later: %v; the complete list read %d more times, want 1", err, reads.of(iss.ID)-before)
	}
	n := 0
	for k := range shards {
		crl, err := c.f.CRL(DefaultAuthority, fsm.CRLShardID(iss.ID, k))
		if errors.Is(err, fsm.ErrNotFound) {
			continue // a shard of three or more: over the limit too
		}
		if err != nil {
			t.Fatal(err)
		}
		rl, err := x509.ParseRevocationList(crl.DER)
		if err != nil {
			t.Fatal(err)
		}
		n += len(rl.RevokedCertificateEntries)
	}
	if n == 0 {
		t.Fatal("no shard was signed")
	}
}

// revokedReads counts the revoked lists read, by CRL.
type revokedReads struct {
	State
	mu sync.Mutex
	n  map[string]int
}

func (r *revokedReads) Revoked(authority, id string, t time.Time) ([]fsm.RevokedEntry, error) {
	r.mu.Lock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[id]++
	r.mu.Unlock()
	return r.State.Revoked(authority, id, t)
}

func (r *revokedReads) of(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[id]
}

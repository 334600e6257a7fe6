package authority

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quorumca/quorumca/fsm"
)

// Shards are set through UpdateAuthority within bounds; a CRL over the
// most one CRL lists is refused with what to do, and the shards, each a
// part of it, are still signed.
func TestCRLOverOneCRLsSizeIsRefusedAndShardsStillSigned(t *testing.T) {
	ctx := context.Background()
	c := newTestCAWith(t, func(cfg *Config) { cfg.MaxCRLEntries = 2 })
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
	inShard := map[int]int{} // revoked certificates per shard
	for _, name := range []string{"a.example", "b.example", "c.example", "d.example", "e.example"} {
		leaf, _ := c.issued(t, name)
		if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(leaf.SerialNumber), Admin: c.admin}); err != nil {
			t.Fatal(err)
		}
		inShard[fsm.CRLShard(SerialHex(leaf.SerialNumber), shards)]++
	}
	err = c.RefreshStaleCRLs(ctx)
	if !errors.Is(err, ErrCRLTooLarge) || !strings.Contains(err.Error(), "would list more than the 2 certificates") || !strings.Contains(err.Error(), "shards") {
		t.Fatalf("refresh: %v", err)
	}
	// Of 5 in 2 shards, one holds 2 or fewer: signed, listing them; one
	// with 3 or more is over the limit too, and not signed.
	iss := a.Issuers[0]
	for k := range shards {
		crl, err := c.f.CRL(DefaultAuthority, fsm.CRLShardID(iss.ID, k))
		if inShard[k] > 2 {
			if !errors.Is(err, fsm.ErrNotFound) {
				t.Errorf("shard %d of %d revoked: %v, want not signed", k, inShard[k], err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("shard %d of %d revoked: %v", k, inShard[k], err)
		}
		rl, err := x509.ParseRevocationList(crl.DER)
		if err != nil {
			t.Fatal(err)
		}
		if len(rl.RevokedCertificateEntries) != inShard[k] {
			t.Errorf("shard %d lists %d, want %d", k, len(rl.RevokedCertificateEntries), inShard[k])
		}
	}
}

// Shards need the base URL their URLs are made from, whichever of the two
// is set last: clearing the base URL of an authority with shards is
// refused unless the same request drops the shards. Otherwise the next
// issuer would get one CRL, which a fleet that asked for shards outgrows.
func TestCRLShardsKeepTheirBaseURL(t *testing.T) {
	ctx := context.Background()
	c := newTestCA(t)
	dir := t.TempDir()
	a, err := c.CreateAuthority(ctx, CreateAuthorityRequest{Name: "fleet", BaseURL: "http://lb.example",
		RootKey: KeySpec{URI: "softkey:" + filepath.Join(dir, "root.key"), Create: true},
		Key:     KeySpec{URI: "softkey:" + filepath.Join(dir, "one.key"), Create: true}})
	if err != nil {
		t.Fatal(err)
	}
	four, zero, none := 4, 0, ""
	if _, err := c.UpdateAuthority(ctx, UpdateRequest{Name: a.Name, CRLShards: &four}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateAuthority(ctx, UpdateRequest{Name: a.Name, BaseURL: &none}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("base URL cleared under 4 shards: %v, want refused", err)
	}
	a, err = c.RotateIssuer(ctx, RotateRequest{Name: a.Name, Key: KeySpec{URI: "softkey:" + filepath.Join(dir, "two.key"), Create: true}})
	if err != nil {
		t.Fatal(err)
	}
	if n := a.ActiveIssuers()[0].CRLShards; n != 4 {
		t.Fatalf("the next issuer has %d CRL shards, want the authority's 4", n)
	}
	if a, err = c.UpdateAuthority(ctx, UpdateRequest{Name: a.Name, BaseURL: &none, CRLShards: &zero}); err != nil || a.BaseURL != "" || a.CRL.Shards != 0 {
		t.Fatalf("base URL and shards dropped together: %v %+v", err, a)
	}
}

// A CRL that outgrew its limit stays stale, so the leader tries it again
// every CRL interval, for good. Each try reads no more of it than the
// limit: what it costs does not grow with the issuer's revocations (with
// a million, decoding every entry every 5 seconds was the leader's).
func TestAnOutgrownCRLCostsTheLimitNotItsSize(t *testing.T) {
	ctx := context.Background()
	c := newTestCAWith(t, func(cfg *Config) { cfg.MaxCRLEntries = 10 })
	revoke := func(n int) {
		for i := range n {
			leaf, _ := c.issued(t, fmt.Sprintf("r%d.example", i))
			if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(leaf.SerialNumber), Admin: c.admin}); err != nil {
				t.Fatal(err)
			}
		}
	}
	try := func() float64 {
		return testing.AllocsPerRun(5, func() {
			if err := c.RefreshStaleCRLs(ctx); !errors.Is(err, ErrCRLTooLarge) {
				t.Fatalf("refresh: %v", err)
			}
		})
	}
	revoke(20)
	small := try()
	revoke(300)
	if large := try(); large > 2*small {
		t.Fatalf("an outgrown CRL's refresh: %.0f allocations with 20 revoked, %.0f with 320", small, large)
	}
}

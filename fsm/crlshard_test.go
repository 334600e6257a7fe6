package fsm

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestCRLShardOfASerialIsItsValueModuloTheCount(t *testing.T) {
	for _, c := range []struct {
		serial string
		n, k   int
	}{{"11", 4, 1}, {"10", 4, 0}, {"ff", 7, 255 % 7}, {"1" + "00000000000000000000000000000000", 3, 1}, {"zz", 4, 0}, {"11", 1, 0}, {"11", 0, 0}} {
		if got := CRLShard(c.serial, c.n); got != c.k {
			t.Errorf("CRLShard(%s, %d) = %d, want %d", c.serial, c.n, got, c.k)
		}
	}
	for id, want := range map[string][2]any{"ab": {"ab", -1}, "ab/3": {"ab", 3}, "ab/03": {"ab/03", -1}, "ab/-1": {"ab/-1", -1}, "ab/x": {"ab/x", -1}, "root-ab": {"root-ab", -1}} {
		if iss, k := SplitCRLID(id); iss != want[0] || k != want[1] {
			t.Errorf("SplitCRLID(%q) = %q, %d; want %v", id, iss, k, want)
		}
	}
}

// An issuer's shards are set once from the authority's settings (when it
// has shards and a base URL), never by a proposer, and never change; a
// revocation lists the certificate in its shard and marks only that shard
// (and the complete CRL) stale; a CRL is taken only for a shard that
// exists.
func TestCRLShardsArePinnedAndListTheirCertificates(t *testing.T) {
	f, b := lifecycle(t)
	ok := func(typ CmdType, p any) {
		t.Helper()
		if err := apply(t, f, b.entry(typ, t0, p)); err != nil {
			t.Fatalf("%d: %v", typ, err)
		}
	}
	shards := func(id string) (int, string) {
		t.Helper()
		a, err := f.Authority("default")
		if err != nil {
			t.Fatal(err)
		}
		iss := a.Issuer(id)
		return iss.CRLShards, iss.CRLBaseURL
	}
	four, eight := 4, 8
	ok(CmdAuthorityUpdate, AuthorityUpdate{Name: "default", CRL: &CRLSettings{Shards: four}})
	if n, _ := shards("1"); n != 0 {
		t.Fatalf("issuer sharded without a base URL for its shards' URLs: %d", n)
	}
	lb := "http://lb.example"
	ok(CmdAuthorityUpdate, AuthorityUpdate{Name: "default", BaseURL: &lb})
	if n, u := shards("1"); n != 4 || u != lb {
		t.Fatalf("issuer 1: %d shards under %q, want 4 under %s", n, u, lb)
	}
	other := "http://other.example"
	ok(CmdAuthorityUpdate, AuthorityUpdate{Name: "default", BaseURL: &other, CRL: &CRLSettings{Shards: eight}})
	if n, u := shards("1"); n != 4 || u != lb {
		t.Fatalf("issuer 1's shards changed: %d under %q", n, u)
	}
	ok(CmdIssuerAdd, IssuerAdd{Authority: "default", Issuer: Issuer{ID: "2", Chain: [][]byte{[]byte("int2")}, KeyURI: "k2", CRLShards: 99, CRLBaseURL: "http://evil"}})
	if n, u := shards("2"); n != 8 || u != other {
		t.Fatalf("new issuer 2: %d shards under %q, want the authority's 8 under %s", n, u, other)
	}

	// Certificates of issuer 1: serials 0x10..0x17, shards 0..3 twice.
	var toks []Token
	for i := range 8 {
		toks = append(toks, Token{ID: fmt.Sprintf("x%d", i), Hash: hashOf(fmt.Sprintf("x%d", i)), Provisioner: "p",
			SANs: []string{"a.example"}, ExpiresAt: t0.Add(time.Hour)})
	}
	ok(CmdTokenCreate, TokenCreate{Tokens: toks})
	for i := range 8 {
		ok(CmdIssue, Issue{TokenHash: hashOf(fmt.Sprintf("x%d", i)), Cert: provCert(fmt.Sprintf("%x", 0x10+i), "a.example")})
	}
	ok(CmdRevokeDeferCRL, Revoke{Serial: "15", Reason: 1, By: "admin"}) // 0x15 = 21: shard 1 of 4
	listed := func(id string) []string {
		t.Helper()
		rs, err := f.Revoked("default", id, t0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.Serial)
		}
		return out
	}
	for id, want := range map[string][]string{"1": {"15"}, "1/1": {"15"}, "1/0": nil, "1/2": nil, "1/3": nil} {
		if got := listed(id); !slices.Equal(got, want) {
			t.Errorf("CRL %s lists %v, want %v", id, got, want)
		}
	}
	stale, err := f.StaleCRLs()
	if err != nil {
		t.Fatal(err)
	}
	if want := []IssuerRef{{"default", "1"}, {"default", "1/1"}}; !slices.Equal(stale, want) {
		t.Fatalf("stale CRLs %v, want %v", stale, want)
	}

	put := func(id string, n uint64) error {
		return apply(t, f, b.entry(CmdCRLPut, t0, CRLPut{CRL: CRL{Authority: "default", Issuer: id, Number: n, DER: []byte(id)}, AsOf: b.index}))
	}
	if err := put("1/1", 1); err != nil {
		t.Fatal(err)
	}
	if stale, _ := f.StaleCRLs(); !slices.Equal(stale, []IssuerRef{{"default", "1"}}) {
		t.Fatalf("after shard 1's CRL, stale: %v", stale)
	}
	for _, id := range []string{"1/4", "1/01", "1/x", "1/-1", "2/8", "3/0", "1/1/1"} {
		if err := put(id, 1); !errors.Is(err, ErrAuthorityUnknown) {
			t.Errorf("CRL %q: %v, want refused", id, err)
		}
	}
	if err := put("2/7", 1); err != nil {
		t.Errorf("CRL 2/7: %v", err)
	}
}

// A node may write any command, but none that leaves an issuer a shard
// layout no node can walk (every node lists an issuer's CRLs shard by
// shard: the leader each CRL interval, anyone asking for the bundle), nor
// an issuer ID that names another CRL ("id/k" is a shard's, "root-..." a
// root's): shard counts beyond MaxCRLShards are refused, an issuer's
// shards come from the authority's settings only, never from an
// authority_put's or issuer_add's payload.
func TestCRLShardLayoutsFromANodeAreBounded(t *testing.T) {
	f, b := lifecycle(t)
	refused := func(what string, typ CmdType, p any) {
		t.Helper()
		if err := apply(t, f, b.entry(typ, t0, p)); err == nil {
			t.Errorf("%s: applied", what)
		}
	}
	lb := "http://lb.example"
	for _, n := range []int{-1, MaxCRLShards + 1, 1 << 40} {
		refused(fmt.Sprintf("authority_update with %d shards", n), CmdAuthorityUpdate, AuthorityUpdate{Name: "default", BaseURL: &lb, CRL: &CRLSettings{Shards: n}})
	}
	a, _ := f.Authority("default")
	if a.CRL.Shards != 0 || a.Issuers[0].CRLShards != 0 {
		t.Fatalf("after refused updates: authority %d shards, issuer %d", a.CRL.Shards, a.Issuers[0].CRLShards)
	}
	for _, id := range []string{"2/1", "root-2", ""} {
		refused("issuer_add of issuer "+id, CmdIssuerAdd, IssuerAdd{Authority: "default", Issuer: Issuer{ID: id, Chain: [][]byte{[]byte("int-" + id)}, KeyURI: "k"}})
		other := authority()
		other.Name, other.Issuers[0].ID = "other-"+id, id
		refused("authority_put with issuer "+id, CmdAuthorityPut, other)
	}
	huge := authority()
	huge.Name, huge.BaseURL = "huge", lb
	huge.Issuers[0].CRLShards, huge.Issuers[0].CRLBaseURL = 1<<40, "http://elsewhere.example"
	if err := apply(t, f, b.entry(CmdAuthorityPut, t0, huge)); err != nil {
		t.Fatal(err)
	}
	if a, _ := f.Authority("huge"); a.Issuers[0].CRLShards != 0 || a.Issuers[0].CRLBaseURL != "" {
		t.Fatalf("authority_put set its issuer's shards: %d under %q", a.Issuers[0].CRLShards, a.Issuers[0].CRLBaseURL)
	}
	sharded := authority()
	sharded.Name, sharded.BaseURL, sharded.CRL.Shards = "sharded", lb, 8
	if err := apply(t, f, b.entry(CmdAuthorityPut, t0, sharded)); err != nil {
		t.Fatal(err)
	}
	if a, _ := f.Authority("sharded"); a.Issuers[0].CRLShards != 8 || a.Issuers[0].CRLBaseURL != lb {
		t.Fatalf("authority_put with crl.shards 8: issuer %d shards under %q, want the settings'", a.Issuers[0].CRLShards, a.Issuers[0].CRLBaseURL)
	}
}

// A reader's authority is its own: changing its issuers, their chains or
// its roots leaves what the next reader (and Apply) sees as it was.
func TestAnAuthorityReadIsTheReadersCopy(t *testing.T) {
	f, _ := lifecycle(t)
	a, err := f.Authority("default")
	if err != nil {
		t.Fatal(err)
	}
	a.Issuers[0].Chain[0] = []byte("changed")
	a.Issuers[0].Chain = append(a.Issuers[0].Chain, []byte("more"))
	a.Issuers[0].KeyURI = "changed"
	a.AddedRoots = append(a.AddedRoots, []byte("root"))
	b, err := f.Authority("default")
	if err != nil {
		t.Fatal(err)
	}
	if iss := b.Issuers[0]; string(iss.Chain[0]) != "int-der" || len(iss.Chain) != 1 || iss.KeyURI != "softkey:/k.pem" || len(b.AddedRoots) != 0 {
		t.Fatalf("a reader's changes reached the state: %+v", b)
	}
}

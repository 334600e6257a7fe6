package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// lifecycle is an FSM with an authority, a provisioner with a one-hour
// renewal grace, and one certificate ("01") issued from a token.
func lifecycle(t *testing.T) (*FSM, *logBuilder) {
	f := openTest(t)
	b := &logBuilder{t: t}
	res := f.ApplyBatch([]*raft.Log{
		b.entry(CmdAuthorityPut, t0, authority()),
		b.entry(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: Provisioner{Name: "p", Kind: KindEnrollmentToken, Authority: "default", Policy: Policy{RenewGrace: time.Hour}}}),
		b.entry(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{{ID: "t1", Hash: hashOf("s1"), Provisioner: "p", SANs: []string{"a.example"}, ExpiresAt: t0.Add(time.Hour), Properties: map[string]string{"fleet": "eu-1"}}}}),
		b.entry(CmdIssue, t0, Issue{TokenHash: hashOf("s1"), Cert: provCert("01", "a.example")}),
	})
	for i, r := range res {
		if r != nil {
			t.Fatalf("setup entry %d: %v", i, r)
		}
	}
	return f, b
}

func apply(t *testing.T, f *FSM, l *raft.Log) error {
	t.Helper()
	err, _ := f.ApplyBatch([]*raft.Log{l})[0].(error)
	return err
}

func TestTokenPropertiesAndProvisionerReachRecord(t *testing.T) {
	f, _ := lifecycle(t)
	c, _ := f.Cert("01")
	if c.Provisioner != "p" || c.Properties["fleet"] != "eu-1" {
		t.Fatalf("record %+v", c)
	}
}

func TestTokenOfOtherProvisionerRefused(t *testing.T) {
	f, b := lifecycle(t)
	apply(t, f, b.entry(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{{ID: "t2", Hash: hashOf("s2"), Provisioner: "p", SANs: []string{"a.example"}, ExpiresAt: t0.Add(time.Hour)}}}))
	if err := apply(t, f, b.entry(CmdIssue, t0, Issue{TokenHash: hashOf("s2"), Cert: cert("02", "a.example")})); !errors.Is(err, ErrProvisioner) {
		t.Fatalf("got %v", err)
	}
}

func TestProvisionerVersions(t *testing.T) {
	f, b := lifecycle(t)
	p := Provisioner{Name: "p", Kind: KindEnrollmentToken, Authority: "default", Policy: Policy{DNS: []string{"*"}}}
	if err := apply(t, f, b.entry(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: p, ExpectedVersion: 0})); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("create over existing: %v", err)
	}
	if err := apply(t, f, b.entry(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: p, ExpectedVersion: 1})); err != nil {
		t.Fatal(err)
	}
	// The same update proposed again is a no-op, a stale one conflicts.
	if err := apply(t, f, b.entry(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: p, ExpectedVersion: 1})); err != nil {
		t.Fatalf("retried update: %v", err)
	}
	p.Policy.DNS = []string{"x.example"}
	if err := apply(t, f, b.entry(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: p, ExpectedVersion: 1})); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("stale update: %v", err)
	}
	got, _ := f.Provisioner("p")
	if got.Version != 2 || got.Policy.DNS[0] != "*" {
		t.Fatalf("provisioner %+v", got)
	}
	p.Authority = "nope"
	if err := apply(t, f, b.entry(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: p, ExpectedVersion: 2})); !errors.Is(err, ErrAuthorityUnknown) {
		t.Fatalf("unknown authority: %v", err)
	}
}

func TestTokenRevoke(t *testing.T) {
	f, b := lifecycle(t)
	apply(t, f, b.entry(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{{ID: "t2", Hash: hashOf("s2"), Provisioner: "p", SANs: []string{"a.example"}, ExpiresAt: t0.Add(time.Hour)}}}))
	for _, tt := range []struct {
		id   string
		want error
	}{{"t2", nil}, {"t2", nil}, {"t1", ErrTokenUsed}, {"nope", ErrTokenUnknown}} {
		if err := apply(t, f, b.entry(CmdTokenRevoke, t0, TokenRevoke{ID: tt.id})); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("revoke %s: %v, want %v", tt.id, err, tt.want)
		}
	}
	if err := apply(t, f, b.entry(CmdIssue, t0, Issue{TokenHash: hashOf("s2"), Cert: provCert("02", "a.example")})); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("revoked token used: %v", err)
	}
}

func TestOneTimeIDsAreSingleUse(t *testing.T) {
	f, b := lifecycle(t)
	ot := &OneTime{Key: hashOf("jti"), Expires: t0.Add(5 * time.Minute)}
	if err := apply(t, f, b.entry(CmdIssue, t0, Issue{OneTime: ot, Cert: provCert("02", "a.example")})); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, f, b.entry(CmdIssue, t0, Issue{OneTime: ot, Cert: provCert("03", "a.example")})); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("replayed jti: %v", err)
	}
	late := &OneTime{Key: hashOf("jti-2"), Expires: t0.Add(5 * time.Minute)}
	if err := apply(t, f, b.entry(CmdIssue, t0.Add(6*time.Minute), Issue{OneTime: late, Cert: provCert("04", "a.example")})); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired jti: %v", err)
	}
	// Pruned after expiry: the FSM does not grow with every token ever seen.
	apply(t, f, b.entry(CmdTokenPrune, t0.Add(10*time.Minute), TokenPrune{Before: t0.Add(10 * time.Minute)}))
	if f.HasTokensExpiredBefore(t0.Add(10 * time.Minute)) {
		t.Error("expired entries left")
	}
}

func TestRenewalRules(t *testing.T) {
	renewal := func(serial string, mutate func(*Cert)) Issue {
		c := provCert(serial, "a.example")
		if mutate != nil {
			mutate(&c)
		}
		return Issue{Renews: "01", Cert: c}
	}
	tests := []struct {
		name  string
		setup func(*FSM, *logBuilder)
		at    time.Time
		iss   Issue
		want  error
	}{
		{"same identity", nil, t0.Add(time.Hour), renewal("10", nil), nil},
		{"within grace", nil, t0.Add(24*time.Hour + 30*time.Minute), renewal("10", nil), nil},
		{"beyond grace", nil, t0.Add(26 * time.Hour), renewal("10", nil), ErrCertExpired},
		{"other names", nil, t0, renewal("10", func(c *Cert) { c.SANs = []string{"b.example"} }), ErrNameNotAllowed},
		{"extra name", nil, t0, renewal("10", func(c *Cert) { c.SANs = append(c.SANs, "b.example") }), ErrNameNotAllowed},
		{"other authority", func(f *FSM, b *logBuilder) {
			a := authority()
			a.Name = "other"
			apply(t, f, b.entry(CmdAuthorityPut, t0, a))
		}, t0, renewal("10", func(c *Cert) { c.Authority = "other" }), ErrNameNotAllowed},
		{"unknown", nil, t0, Issue{Renews: "99", Cert: provCert("10", "a.example")}, ErrCertUnknown},
		{"revoked", func(f *FSM, b *logBuilder) {
			apply(t, f, b.entry(CmdRevoke, t0, Revoke{Serial: "01", Reason: 1}))
		}, t0, renewal("10", nil), ErrCertRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, b := lifecycle(t)
			if tt.setup != nil {
				tt.setup(f, b)
			}
			before := f.Digest()
			err := apply(t, f, b.entry(CmdIssue, tt.at, tt.iss))
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if tt.want != nil && f.Digest() != before {
				t.Error("refused renewal changed state")
			}
			if tt.want == nil {
				if c, _ := f.Cert("10"); c == nil || c.RenewedFrom != "01" {
					t.Errorf("renewal record %+v", c)
				}
			}
		})
	}
}

func TestRevokeAndCRLNumbers(t *testing.T) {
	f, b := lifecycle(t)
	if err := apply(t, f, b.entry(CmdRevoke, t0.Add(time.Minute), Revoke{Serial: "01", Reason: 1, By: "admin"})); err != nil {
		t.Fatal(err)
	}
	// A second revocation keeps the first one's time and reason.
	apply(t, f, b.entry(CmdRevoke, t0.Add(time.Hour), Revoke{Serial: "01", Reason: 4}))
	c, _ := f.Cert("01")
	if !c.RevokedAt.Equal(t0.Add(time.Minute)) || c.RevocationReason != 1 {
		t.Fatalf("record %+v", c)
	}
	if err := apply(t, f, b.entry(CmdRevoke, t0, Revoke{Serial: "99"})); !errors.Is(err, ErrCertUnknown) {
		t.Fatalf("unknown serial: %v", err)
	}
	rev, err := f.Revoked("default", "1", t0)
	if err != nil || len(rev) != 1 || rev[0].Serial != "01" || rev[0].Reason != 1 {
		t.Fatalf("revoked list %+v %v", rev, err)
	}
	// Expired revoked certificates fall off.
	if rev, _ := f.Revoked("default", "1", t0.Add(48*time.Hour)); len(rev) != 0 {
		t.Errorf("expired entries listed: %+v", rev)
	}
	crl := func(n uint64, der string) error {
		return apply(t, f, b.entry(CmdCRLPut, t0, CRL{Authority: "default", Issuer: "1", Number: n, DER: []byte(der)}))
	}
	for _, tt := range []struct {
		n    uint64
		der  string
		want error
	}{{1, "a", nil}, {1, "a", nil}, {1, "b", ErrConflict}, {3, "c", nil}, {2, "d", ErrConflict}} {
		if err := crl(tt.n, tt.der); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("CRL %d %s: %v, want %v", tt.n, tt.der, err, tt.want)
		}
	}
	if cur, _ := f.CRL("default", "1"); cur.Number != 3 {
		t.Errorf("current CRL %d", cur.Number)
	}
}

func TestIssuerAddAndRotation(t *testing.T) {
	f, b := lifecycle(t)
	second := Issuer{ID: "2", Chain: [][]byte{[]byte("int-2")}, KeyURI: "awskms:key-2"}
	if err := apply(t, f, b.entry(CmdIssuerAdd, t0, IssuerAdd{Authority: "default", Issuer: second})); err != nil {
		t.Fatal(err)
	}
	a, _ := f.Authority("default")
	if n := len(a.ActiveIssuers()); n != 2 {
		t.Fatalf("%d active issuers, want 2 sharing issuance", n)
	}
	// Retried: a no-op; the same ID with another key: a conflict.
	if err := apply(t, f, b.entry(CmdIssuerAdd, t0, IssuerAdd{Authority: "default", Issuer: second})); err != nil {
		t.Fatalf("retried add: %v", err)
	}
	clash := second
	clash.KeyURI = "awskms:other"
	if err := apply(t, f, b.entry(CmdIssuerAdd, t0, IssuerAdd{Authority: "default", Issuer: clash})); !errors.Is(err, ErrConflict) {
		t.Fatalf("clashing add: %v", err)
	}
	// Rotation retires the others, which keep their CRLs.
	third := Issuer{ID: "3", Chain: [][]byte{[]byte("int-3")}, KeyURI: "awskms:key-3"}
	if err := apply(t, f, b.entry(CmdIssuerAdd, t0, IssuerAdd{Authority: "default", Issuer: third, RetireOthers: true})); err != nil {
		t.Fatal(err)
	}
	a, _ = f.Authority("default")
	if act := a.ActiveIssuers(); len(act) != 1 || act[0].ID != "3" {
		t.Fatalf("active after rotation: %+v", act)
	}
	if err := apply(t, f, b.entry(CmdCRLPut, t0, CRL{Authority: "default", Issuer: "1", Number: 1, DER: []byte("x")})); err != nil {
		t.Errorf("retired issuer's CRL: %v", err)
	}
	if err := apply(t, f, b.entry(CmdCRLPut, t0, CRL{Authority: "default", Issuer: "9", Number: 1})); !errors.Is(err, ErrAuthorityUnknown) {
		t.Errorf("unknown issuer's CRL: %v", err)
	}
	if err := apply(t, f, b.entry(CmdIssue, t0, Issue{OneTime: &OneTime{Key: hashOf("x"), Expires: t0.Add(time.Minute)},
		Cert: func() Cert { c := provCert("77", "a.example"); c.Issuer = "9"; return c }()})); !errors.Is(err, ErrAuthorityUnknown) {
		t.Errorf("certificate of unknown issuer: %v", err)
	}
}

// A root rotation adds the new root beside the old, once; a version 1
// entry (no new root) still applies.
func TestIssuerAddWithNewRoot(t *testing.T) {
	f, b := lifecycle(t)
	next := Issuer{ID: "2", Chain: [][]byte{[]byte("int-under-root-2")}, KeyURI: "awskms:key-2"}
	add := IssuerAdd{Authority: "default", Issuer: next, RetireOthers: true, NewRoot: []byte("root-2")}
	for range 2 { // the second is a retry
		if err := apply(t, f, b.entry(CmdIssuerAdd, t0, add)); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := f.Authority("default")
	if roots := a.Roots(); len(roots) != 2 || string(roots[1]) != "root-2" || !bytes.Equal(roots[0], a.Root) {
		t.Fatalf("roots after rotation: %q", roots)
	}
	// The old root presented as new again is not added twice.
	again := IssuerAdd{Authority: "default", Issuer: Issuer{ID: "3", Chain: [][]byte{[]byte("int-3")}, KeyURI: "awskms:key-3"}, NewRoot: a.Root}
	if err := apply(t, f, b.entry(CmdIssuerAdd, t0, again)); err != nil {
		t.Fatal(err)
	}
	if a, _ = f.Authority("default"); len(a.Roots()) != 2 {
		t.Fatalf("%d roots", len(a.Roots()))
	}
	v1 := b.entry(CmdIssuerAdd, t0, IssuerAdd{Authority: "default", Issuer: Issuer{ID: "4", Chain: [][]byte{[]byte("int-4")}, KeyURI: "awskms:key-4"}})
	env, _ := DecodeEnvelope(v1.Data)
	env.Version = 1
	v1.Data, _ = env.Encode()
	if err := apply(t, f, v1); err != nil {
		t.Fatalf("version 1 issuer_add: %v", err)
	}
}

func TestAuthorityPutVersion1StillApplies(t *testing.T) {
	f := openTest(t)
	env := &Envelope{Type: CmdAuthorityPut, Version: 1, Time: t0.UnixNano(),
		Payload: []byte(`{"name":"old","root":"cm9vdA==","chain":["aW50"],"key_uri":"softkey:/k"}`)}
	data, _ := env.Encode()
	if r := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data}); r != nil {
		t.Fatal(r)
	}
	a, err := f.Authority("old")
	if err != nil || len(a.Issuers) != 1 || a.Issuers[0].KeyURI != "softkey:/k" || !a.Issuers[0].Active {
		t.Fatalf("%+v %v", a, err)
	}
}

func TestAuditChain(t *testing.T) {
	f := openTest(t)
	logs := workload(t)
	f.ApplyBatch(logs)
	n, err := f.VerifyAudit()
	if err != nil || n != uint64(len(logs)) {
		t.Fatalf("verify: %d entries, %v", n, err)
	}
	page, _ := f.Audit(AuditFilter{Command: "issue", Limit: 1000})
	entries := page.Entries
	refused := 0
	for _, e := range entries {
		if e.Outcome == "token_used" {
			refused++
		}
	}
	if len(entries) != 22+1+3 || refused != 1 { // the token's, and three of devices

		t.Errorf("%d issue entries, %d refused", len(entries), refused)
	}
	// Two FSMs fed the same log hold the same chain.
	g := openTest(t)
	for _, l := range logs {
		g.ApplyBatch([]*raft.Log{l})
	}
	if _, h1 := f.AuditHead(); func() string { _, h := g.AuditHead(); return h }() != h1 {
		t.Error("audit chains differ")
	}
}

func TestAuditTamperingIsDetected(t *testing.T) {
	tamper := map[string]func(tx *bolt.Tx){
		"edit": func(tx *bolt.Tx) {
			b := tx.Bucket(bAudit)
			v := bytes.Replace(b.Get(seqKey(5)), []byte(`"outcome":"ok"`), []byte(`"outcome":"no"`), 1)
			b.Put(seqKey(5), v)
		},
		"delete": func(tx *bolt.Tx) { tx.Bucket(bAudit).Delete(seqKey(7)) },
		"truncate": func(tx *bolt.Tx) {
			b := tx.Bucket(bAudit)
			k, _ := b.Cursor().Last()
			b.Delete(k)
		},
	}
	for name, fn := range tamper {
		t.Run(name, func(t *testing.T) {
			f := openTest(t)
			f.ApplyBatch(workload(t))
			f.db.Update(func(tx *bolt.Tx) error { fn(tx); return nil })
			if _, err := f.VerifyAudit(); !errors.Is(err, ErrAuditBroken) {
				t.Fatalf("tampering (%s) not detected: %v", name, err)
			}
		})
	}
}

func TestSearchCerts(t *testing.T) {
	f, b := lifecycle(t)
	for i := range 5 {
		tok := Token{ID: fmt.Sprint("q", i), Hash: hashOf(fmt.Sprint("search", i)), Provisioner: "p", SANs: []string{"x.example"},
			ExpiresAt: t0.Add(time.Hour), Properties: map[string]string{"fleet": []string{"eu-1", "us-1"}[i%2]}}
		apply(t, f, b.entry(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{tok}}))
		c := provCert(fmt.Sprintf("%x", 0x100+i), "x.example")
		c.NotAfter = t0.Add(time.Duration(i+1) * time.Hour)
		if err := apply(t, f, b.entry(CmdIssue, t0, Issue{TokenHash: tok.Hash, Cert: c})); err != nil {
			t.Fatal(err)
		}
	}
	apply(t, f, b.entry(CmdRevoke, t0, Revoke{Serial: "101"}))
	count := func(q CertQuery) int {
		q.Now = t0.Add(150 * time.Minute)
		out, _, err := f.SearchCerts(q)
		if err != nil {
			t.Fatal(err)
		}
		return len(out)
	}
	for name, tt := range map[string]struct {
		q    CertQuery
		want int
	}{
		"by san":             {CertQuery{SAN: "x.example"}, 5},
		"by property":        {CertQuery{Property: "fleet=eu-1"}, 4}, // and "01" from the setup
		"by provisioner":     {CertQuery{Provisioner: "p"}, 6},       // and "01" from the setup
		"revoked":            {CertQuery{SAN: "x.example", Status: "revoked"}, 1},
		"expired":            {CertQuery{SAN: "x.example", Status: "expired"}, 1}, // 100 (1h); 101 is revoked
		"valid":              {CertQuery{SAN: "x.example", Status: "valid"}, 3},
		"expiry window":      {CertQuery{ExpiresAfter: t0.Add(2 * time.Hour), ExpiresBefore: t0.Add(4 * time.Hour)}, 2},
		"property and state": {CertQuery{Property: "fleet=us-1", Status: "valid"}, 1},
	} {
		if got := count(tt.q); got != tt.want {
			t.Errorf("%s: %d, want %d", name, got, tt.want)
		}
	}
	// Paging visits every record once.
	var seen []string
	var cursor []byte
	for {
		page, next, _ := f.SearchCerts(CertQuery{SAN: "x.example", Cursor: cursor, Limit: 2})
		for _, c := range page {
			seen = append(seen, c.Serial)
		}
		if next == nil {
			break
		}
		cursor = next
	}
	if len(seen) != 5 {
		t.Errorf("paged through %v", seen)
	}
}

func TestProvisionerDeleteAndOutstandingTokens(t *testing.T) {
	f, b := lifecycle(t)
	apply(t, f, b.entry(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{{ID: "t2", Hash: hashOf("s2"), Provisioner: "p", SANs: []string{"a"}, ExpiresAt: t0.Add(time.Hour)}}}))
	toks, _, _ := f.OutstandingTokens("p", t0, nil, 10)
	if len(toks) != 1 || toks[0].ID != "t2" { // t1 was used in setup
		t.Fatalf("outstanding: %+v", toks)
	}
	if err := apply(t, f, b.entry(CmdProvisionerDel, t0, ProvisionerDelete{Name: "p"})); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete with outstanding tokens: %v", err)
	}
	if err := apply(t, f, b.entry(CmdProvisionerDel, t0, ProvisionerDelete{Name: "p", Force: true})); err != nil {
		t.Fatal(err)
	}
	if tok, _ := f.TokenByID("t2"); tok.RevokedAt.IsZero() {
		t.Error("forced delete left the token usable")
	}
	if _, err := f.Provisioner("p"); !errors.Is(err, ErrNotFound) {
		t.Error("provisioner kept")
	}
}

func TestLastAdminCannotBeRevoked(t *testing.T) {
	f, b := lifecycle(t)
	apply(t, f, b.entry(CmdAdminCreate, t0, AdminCreate{Admin: Admin{ID: "a1", Name: "root", Role: "admin", Hash: hashOf("a1")}}))
	apply(t, f, b.entry(CmdAdminCreate, t0, AdminCreate{Admin: Admin{ID: "a2", Name: "audit", Role: "auditor", Hash: hashOf("a2")}}))
	if err := apply(t, f, b.entry(CmdAdminRevoke, t0, AdminRevoke{ID: "a1"})); !errors.Is(err, ErrConflict) {
		t.Fatalf("revoking the last admin: %v", err)
	}
	apply(t, f, b.entry(CmdAdminCreate, t0, AdminCreate{Admin: Admin{ID: "a3", Name: "ops", Role: "admin", Hash: hashOf("a3")}}))
	if err := apply(t, f, b.entry(CmdAdminRevoke, t0, AdminRevoke{ID: "a1"})); err != nil {
		t.Fatal(err)
	}
	if a, _ := f.AdminByHash(hashOf("a1")); a.Active(t0) {
		t.Error("revoked admin still active")
	}
}

// Provisioner reads come from a cache of decoded records: a caller's
// changes to its copy do not reach the next reader, and a committed change
// is read at once.
func TestProvisionerReadsAreCopiesOfTheCommittedRecord(t *testing.T) {
	f, b := lifecycle(t)
	p, err := f.Provisioner("p")
	if err != nil {
		t.Fatal(err)
	}
	p.Policy.DNS = append(p.Policy.DNS, "*.example")
	p.Policy.RenewGrace = 0
	again, _ := f.Provisioner("p")
	if len(again.Policy.DNS) != 0 || again.Policy.RenewGrace != time.Hour {
		t.Fatalf("a caller's change reached the next reader: %+v", again.Policy)
	}
	next := *again
	next.Policy.DNS = []string{"a.example"}
	if err := apply(t, f, b.entry(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: next, ExpectedVersion: again.Version})); err != nil {
		t.Fatal(err)
	}
	again, _ = f.Provisioner("p")
	if len(again.Policy.DNS) != 1 || again.Version != next.Version+1 {
		t.Fatalf("after a change: %+v, version %d", again.Policy, again.Version)
	}
	again.Policy.DNS[0] = "changed.example"
	if p, _ := f.Provisioner("p"); p.Policy.DNS[0] != "a.example" {
		t.Fatalf("a caller's change to a list reached the next reader: %v", p.Policy.DNS)
	}
}

// A provisioner put without allow_wildcard is the version-1 command older
// binaries apply alike; with it, version 2, proposed only on log format 2.
func TestProvisionerPutAllowWildcardVersion(t *testing.T) {
	f, b := lifecycle(t)
	p := Provisioner{Name: "w", Kind: KindEnrollmentToken, Authority: "default", Policy: Policy{DNS: []string{"*.example"}}}
	plain, _ := NewEnvelope(CmdProvisionerPut, "x", ProvisionerPut{Provisioner: p})
	if plain.Version != 1 || plain.Format() != 0 || bytes.Contains(plain.Payload, []byte("allow_wildcard")) {
		t.Fatalf("put without allow_wildcard: version %d, format %d, %s", plain.Version, plain.Format(), plain.Payload)
	}
	p.Policy.AllowWildcard = true
	wild, _ := NewEnvelope(CmdProvisionerPut, "y", ProvisionerPut{Provisioner: p})
	if wild.Version != 2 || wild.Format() != 2 {
		t.Fatalf("put with allow_wildcard: version %d, format %d", wild.Version, wild.Format())
	}
	if err := apply(t, f, b.entry(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: p})); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Provisioner("w"); !got.Policy.AllowWildcard {
		t.Fatalf("allow_wildcard lost: %+v", got.Policy)
	}
	// A record written before the field existed reads as false.
	if got, _ := f.Provisioner("p"); got.Policy.AllowWildcard {
		t.Fatal("old record allows wildcards")
	}
}

// CRLSummaries lists every stored CRL, a root's among them (written here
// straight into the bucket, as a later command would store it), with the
// number and dates of the latest.
func TestCRLSummariesListEveryStoredCRL(t *testing.T) {
	f, b := lifecycle(t)
	if got, err := f.CRLSummaries(); err != nil || len(got) != 0 {
		t.Fatalf("no CRL yet: %+v %v", got, err)
	}
	for n := uint64(1); n <= 2; n++ {
		in := CRL{Authority: "default", Issuer: "1", Number: n, ThisUpdate: t0, NextUpdate: t0.Add(time.Duration(n) * time.Hour), DER: []byte{byte(n)}}
		if err := apply(t, f, b.entry(CmdCRLPut, t0, in)); err != nil {
			t.Fatal(err)
		}
	}
	root := CRL{Authority: "default", Issuer: "root-0123456789abcdef", Number: 7, ThisUpdate: t0, NextUpdate: t0.Add(24 * time.Hour)}
	if err := f.db.Update(func(tx *bolt.Tx) error { putJSON(tx, bCRLs, issuerKey(root.Authority, root.Issuer), &root); return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := f.CRLSummaries()
	want := []CRLSummary{
		{Authority: "default", Issuer: "1", Number: 2, ThisUpdate: t0, NextUpdate: t0.Add(2 * time.Hour)},
		{Authority: "default", Issuer: root.Issuer, Number: 7, ThisUpdate: t0, NextUpdate: t0.Add(24 * time.Hour)},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("summaries %+v %v, want %+v", got, err, want)
	}
}

// The versions that need log format 7: a provisioner put with
// server_keygen, and a delegated key of a role other than OCSP (binaries
// before them would drop the field, or take a SCEP RA for the OCSP
// responder); the OCSP responder's own commands stay version 1.
func TestFormat7Versions(t *testing.T) {
	p := Provisioner{Name: "k", Kind: KindEnrollmentToken, Authority: "default", Policy: Policy{ServerKeygen: true}}
	for name, c := range map[string]struct {
		t       CmdType
		payload any
		version uint16
		format  int
	}{
		"server_keygen":  {CmdProvisionerPut, ProvisionerPut{Provisioner: p}, 5, 7},
		"scep ra put":    {CmdOCSPResponderPut, OCSPResponderPut{Role: RoleSCEP}, 2, 7},
		"scep ra delete": {CmdOCSPResponderDel, OCSPResponderDelete{Role: RoleSCEP}, 2, 7},
		"ocsp put":       {CmdOCSPResponderPut, OCSPResponderPut{}, 1, 2},
		"ocsp delete":    {CmdOCSPResponderDel, OCSPResponderDelete{}, 1, 2},
	} {
		env, err := NewEnvelope(c.t, "x", c.payload)
		if err != nil || env.Version != c.version || env.Format() != c.format {
			t.Errorf("%s: version %d, format %d (%v), want %d and %d", name, env.Version, env.Format(), err, c.version, c.format)
		}
	}
}

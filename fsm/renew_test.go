package fsm

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func renewOf(old, serial string) Renew {
	return Renew{Renews: old, Cert: provCert(serial, "a.example")}
}

// A certificate renews once: the first renewal is stored and linked both
// ways, a second is refused without a trace, the same entry proposed again
// is a no-op, and the successor renews in turn, its lineage carried.
func TestRenewOnce(t *testing.T) {
	f, b := lifecycle(t)
	at := t0.Add(time.Hour)
	if err := apply(t, f, b.entry(CmdRenew, at, renewOf("01", "10"))); err != nil {
		t.Fatal(err)
	}
	old, _ := f.Cert("01")
	succ, _ := f.Cert("10")
	if old.RenewedBy != "10" || succ.RenewedFrom != "01" || succ.LineageID() != "01" || !succ.IssuedAt.Equal(at) || old.Revoked() {
		t.Fatalf("records after renewal: old %+v, successor %+v", old, succ)
	}
	before := f.Digest()
	if err := apply(t, f, b.entry(CmdRenew, at, renewOf("01", "11"))); !errors.Is(err, ErrCertRenewed) {
		t.Fatalf("second renewal: %v, want %v", err, ErrCertRenewed)
	}
	if f.Digest() != before {
		t.Fatal("a refused renewal changed state")
	}
	if err := apply(t, f, b.entry(CmdRenew, at, renewOf("01", "10"))); err != nil {
		t.Fatalf("the same renewal proposed again: %v", err)
	}
	if err := apply(t, f, b.entry(CmdRenew, at, renewOf("10", "20"))); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.Cert("20"); c.LineageID() != "01" || c.RenewedFrom != "10" {
		t.Fatalf("second generation %+v", c)
	}
	// The rules of any renewal still hold.
	apply(t, f, b.entry(CmdRevokeDeferCRL, at, Revoke{Serial: "20", Reason: 1}))
	if err := apply(t, f, b.entry(CmdRenew, at, renewOf("20", "30"))); !errors.Is(err, ErrCertRevoked) {
		t.Fatalf("renewal of a revoked certificate: %v", err)
	}
	r := renewOf("10", "31") // renewed already, and expired: renewed wins, so a retry finds its successor
	if err := apply(t, f, b.entry(CmdRenew, t0.Add(48*time.Hour), r)); !errors.Is(err, ErrCertRenewed) {
		t.Fatalf("renewal of a renewed certificate after expiry: %v", err)
	}
}

// CmdIssue with Renews keeps the meaning older binaries give it: nodes of
// two releases apply it alike during a rolling upgrade.
func TestIssueRenewalKeepsItsOldMeaning(t *testing.T) {
	f, b := lifecycle(t)
	for _, s := range []string{"10", "11"} {
		if err := apply(t, f, b.entry(CmdIssue, t0, Issue{Renews: "01", Cert: provCert(s, "a.example")})); err != nil {
			t.Fatalf("renewal %s through CmdIssue: %v", s, err)
		}
	}
	if old, _ := f.Cert("01"); old.RenewedBy != "" {
		t.Fatalf("CmdIssue linked a successor: %+v", old)
	}
}

// A replayed renewal token is refused as used, before the renewed check.
func TestRenewTokenIsSingleUse(t *testing.T) {
	f, b := lifecycle(t)
	ot := &OneTime{Key: hashOf("renew-jti"), Expires: t0.Add(5 * time.Minute)}
	r := renewOf("01", "10")
	r.OneTime = ot
	if err := apply(t, f, b.entry(CmdRenew, t0, r)); err != nil {
		t.Fatal(err)
	}
	r = renewOf("01", "11")
	r.OneTime = ot
	if err := apply(t, f, b.entry(CmdRenew, t0, r)); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("replayed token: %v", err)
	}
}

// revoke_on_renew revokes the renewed certificate in the renewal's entry;
// each revocation marks the CRL stale until a CRL signed from a state that
// includes it is stored.
func TestRevokeOnRenewAndStaleCRLs(t *testing.T) {
	f, b := lifecycle(t)
	r := renewOf("01", "10")
	r.RevokeRenewed = true
	l := b.entry(CmdRenew, t0, r)
	if err := apply(t, f, l); err != nil {
		t.Fatal(err)
	}
	old, _ := f.Cert("01")
	if !old.Revoked() || old.RevocationReason != ReasonSuperseded || old.RevokedBy != "renewal:10" || old.RenewedBy != "10" {
		t.Fatalf("renewed record %+v", old)
	}
	if rev, _ := f.Revoked("default", "1", t0); len(rev) != 1 || rev[0].Serial != "01" || rev[0].Reason != ReasonSuperseded {
		t.Fatalf("revoked list %+v", rev)
	}
	stale := func() []IssuerRef {
		s, err := f.StaleCRLs()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := stale(); !reflect.DeepEqual(s, []IssuerRef{{"default", "1"}}) {
		t.Fatalf("stale CRLs %v", s)
	}
	crl := func(n, asOf uint64) {
		t.Helper()
		if err := apply(t, f, b.entry(CmdCRLPut, t0, CRLPut{CRL: CRL{Authority: "default", Issuer: "1", Number: n, DER: []byte{byte(n)}}, AsOf: asOf})); err != nil {
			t.Fatal(err)
		}
	}
	crl(1, l.Index-1) // signed from a state before the revocation
	if len(stale()) != 1 {
		t.Fatal("a CRL signed before the revocation cleared the mark")
	}
	crl(2, l.Index)
	if len(stale()) != 0 {
		t.Fatal("a CRL that lists the revocation left the mark")
	}
	l = b.entry(CmdRevokeDeferCRL, t0, Revoke{Serial: "10", Reason: 1, By: "admin"})
	if err := apply(t, f, l); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.Cert("10"); !c.Revoked() || len(stale()) != 1 {
		t.Fatalf("deferred revocation: %+v, stale %v", c, stale())
	}
	crl(3, l.Index+5)
	if len(stale()) != 0 {
		t.Fatal("mark left")
	}
	// Revoking again changes nothing and marks nothing.
	before := f.Digest()
	apply(t, f, b.entry(CmdRevokeDeferCRL, t0.Add(time.Hour), Revoke{Serial: "10", Reason: 4}))
	if f.Digest() != before {
		t.Fatal("a second revocation changed state")
	}
}

// Renewals applied one entry at a time or several per transaction give the
// same state;
// the command is binary-only and has no format-0 form.
func TestRenewDeterministicAndFormatGated(t *testing.T) {
	build := func() []*raft.Log {
		b := &logBuilder{t: t}
		var logs []*raft.Log
		add := func(typ CmdType, at time.Time, p any) { logs = append(logs, b.entry(typ, at, p)) }
		add(CmdAuthorityPut, t0, authority())
		add(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: Provisioner{Name: "p", Kind: KindEnrollmentToken, Authority: "default", Policy: Policy{RenewGrace: time.Hour}}})
		add(CmdIssue, t0, Issue{Renews: "", OneTime: &OneTime{Key: hashOf("x"), Expires: t0.Add(time.Hour)}, Cert: provCert("01", "a.example")})
		r := renewOf("01", "10")
		r.RevokeRenewed = true
		add(CmdRenew, t0, r)
		add(CmdRenew, t0, renewOf("01", "11"))
		add(CmdRenew, t0, renewOf("10", "20"))
		add(CmdRevokeDeferCRL, t0, Revoke{Serial: "20", Reason: 1})
		add(CmdCRLPut, t0, CRLPut{CRL: CRL{Authority: "default", Issuer: "1", Number: 1, DER: []byte("c")}, AsOf: 5})
		return logs
	}
	logs := build()
	a, c := openTest(t), openTest(t)
	for _, l := range logs {
		a.ApplyBatch([]*raft.Log{l})
	}
	for i := 0; i < len(logs); i += 3 {
		c.ApplyBatch(logs[i:min(i+3, len(logs))])
	}
	if a.Digest() != c.Digest() {
		t.Fatal("same renewals, different state")
	}
	env, _ := DecodeEnvelope(logs[3].Data)
	if env.Format() != 2 {
		t.Fatalf("renew needs format %d, want 2", env.Format())
	}
	if _, err := env.EncodeFor(0); err == nil {
		t.Fatal("a renew entry was written in format 0")
	}
	env, _ = DecodeEnvelope(logs[6].Data)
	if env.Format() != 2 {
		t.Fatalf("revoke_defer_crl needs format %d, want 2", env.Format())
	}
}

func FuzzRenewPayload(f *testing.F) {
	in := Renew{OneTime: &OneTime{Key: []byte("k"), Expires: t0}, Renews: "0a", RevokeRenewed: true,
		Cert: cert("01", "a.example", "b.example")}
	f.Add(in.appendPayload(nil))
	f.Add(Renew{}.appendPayload(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var in, again Renew
		if readFrame(b, &in) != nil {
			return
		}
		if err := readFrame(in.appendPayload(nil), &again); err != nil {
			t.Fatalf("re-encoded payload does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, in) {
			t.Fatalf("round trip changed the payload: %+v, then %+v", in, again)
		}
	})
}

package fsm

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// acmeLog is an ACME flow: a provisioner, an EAB key, an account bound
// to it, an order with one authorization, its validation and the
// finalization.
func acmeLog(b *logBuilder, add func(CmdType, time.Time, any)) {
	add(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: Provisioner{Name: "acme", Kind: KindACME, Authority: "default",
		Policy: Policy{DNS: []string{".example"}}, ACME: &ACMEOptions{RequireEAB: true}}})
	add(CmdACMEEABPut, t0, ACMEEABPut{Key: &ACMEEAB{ID: "eab1", Provisioner: "acme", Key: []byte("k"), ExpiresAt: t0.Add(time.Hour)}})
	add(CmdACMEAccountNew, t0, ACMEAccountNew{Account: ACMEAccount{ID: "acc1", Provisioner: "acme", Thumbprint: "th1", JWK: []byte(`{}`), EAB: "eab1"}})
	add(CmdACMEOrderNew, t0, ACMEOrderNew{
		Order:  ACMEOrder{ID: "o1", Provisioner: "acme", Account: "acc1", Identifiers: []ACMEIdentifier{{"dns", "a.example"}}, Authzs: []string{"z1"}, Expires: t0.Add(time.Hour)},
		Authzs: []ACMEAuthz{{ID: "z1", Account: "acc1", Identifier: ACMEIdentifier{"dns", "a.example"}, Expires: t0.Add(time.Hour), Challenges: []ACMEChallenge{{Type: "http-01", Token: "tok", Status: ACMEPending}}}}})
	add(CmdACMEChallenge, t0, ACMEChallengeUpdate{Authz: "z1", Account: "acc1", Type: "http-01", Status: ACMEProcessing, Attempt: "a1", Deadline: t0.Add(30 * time.Second)})
	add(CmdACMEChallenge, t0, ACMEChallengeUpdate{Authz: "z1", Account: "acc1", Type: "http-01", Status: ACMEValid, Attempt: "a1", Validated: t0})
	c := cert("acme1", "a.example")
	c.Provisioner = "acme"
	add(CmdACMEFinalize, t0.Add(time.Minute), ACMEFinalize{Order: "o1", Account: "acc1", Cert: c})
}

func TestACMEOrderYieldsOneCertificate(t *testing.T) {
	f := openTest(t)
	b := &logBuilder{t: t}
	var logs []*raft.Log
	add := func(typ CmdType, at time.Time, p any) { logs = append(logs, b.entry(typ, at, p)) }
	add(CmdAuthorityPut, t0, authority())
	acmeLog(b, add)
	for i, r := range f.ApplyBatch(logs) {
		if err, _ := r.(error); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	o, zs, err := f.ACMEOrder("o1")
	if err != nil || o.Status != ACMEValid || o.Cert != "acme1" || ACMEOrderStatus(o, zs, t0.Add(time.Minute)) != ACMEValid {
		t.Fatalf("order %+v %v", o, err)
	}
	second := cert("acme2", "a.example")
	second.Provisioner = "acme"
	refused := []struct {
		what string
		typ  CmdType
		p    any
		want error
	}{
		{"a second certificate for the order", CmdACMEFinalize, ACMEFinalize{Order: "o1", Account: "acc1", Cert: second}, ErrACMEFinalized},
		{"another account's order", CmdACMEFinalize, ACMEFinalize{Order: "o1", Account: "acc2", Cert: second}, ErrACMEUnknown},
		{"the EAB key again", CmdACMEAccountNew, ACMEAccountNew{Account: ACMEAccount{ID: "acc2", Provisioner: "acme", Thumbprint: "th2", EAB: "eab1"}}, ErrACMEEAB},
		{"the same key again", CmdACMEAccountNew, ACMEAccountNew{Account: ACMEAccount{ID: "acc3", Provisioner: "acme", Thumbprint: "th1"}}, ErrACMEAccountExists},
		{"a result of another attempt", CmdACMEChallenge, ACMEChallengeUpdate{Authz: "z1", Account: "acc1", Type: "http-01", Status: ACMEInvalid, Attempt: "a2"}, ErrACMEChallenge},
		{"an order of an unknown account", CmdACMEOrderNew, ACMEOrderNew{Order: ACMEOrder{ID: "o9", Provisioner: "acme", Account: "nobody", Expires: t0.Add(time.Hour)}}, ErrACMEAccount},
	}
	for _, r := range refused {
		if err := apply(t, f, b.entry(r.typ, t0.Add(2*time.Minute), r.p)); !errors.Is(err, r.want) {
			t.Errorf("%s: got %v, want %v", r.what, err, r.want)
		}
	}
	if _, err := f.Cert("acme2"); !errors.Is(err, ErrNotFound) {
		t.Fatal("a refused finalization left a certificate")
	}
	// A certificate is replaced (RFC 9773) once: the second order that
	// names it is refused when it is made, and a finalization that races
	// the first is refused too.
	newOrder := func(id string) ACMEOrderNew {
		return ACMEOrderNew{Order: ACMEOrder{ID: id, Provisioner: "acme", Account: "acc1", Replaces: "acme1", Expires: t0.Add(time.Hour)}}
	}
	for _, id := range []string{"r1", "r2"} {
		if err := apply(t, f, b.entry(CmdACMEOrderNew, t0.Add(2*time.Minute), newOrder(id))); err != nil {
			t.Fatal(err)
		}
	}
	rc := cert("acme3", "a.example")
	if err := apply(t, f, b.entry(CmdACMEFinalize, t0.Add(2*time.Minute), ACMEFinalize{Order: "r1", Account: "acc1", Cert: rc})); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.Cert("acme3"); c == nil || c.RenewedFrom != "acme1" {
		t.Fatalf("the replacement's record: %+v", c)
	}
	rc.Serial, rc.DER = "acme4", []byte("der-acme4")
	if err := apply(t, f, b.entry(CmdACMEFinalize, t0.Add(2*time.Minute), ACMEFinalize{Order: "r2", Account: "acc1", Cert: rc})); !errors.Is(err, ErrACMEReplaced) {
		t.Fatalf("a second replacement finalized: %v", err)
	}
	if err := apply(t, f, b.entry(CmdACMEOrderNew, t0.Add(2*time.Minute), newOrder("r3"))); !errors.Is(err, ErrACMEReplaced) {
		t.Fatalf("an order replacing a replaced certificate: %v", err)
	}
}

// A validation whose node died (no result by its deadline) may be started
// again, and only the newer attempt's result counts.
func TestACMEValidationPastItsDeadlineRestarts(t *testing.T) {
	f := openTest(t)
	b := &logBuilder{t: t}
	must := func(at time.Time, typ CmdType, p any) {
		t.Helper()
		if err := apply(t, f, b.entry(typ, at, p)); err != nil {
			t.Fatal(err)
		}
	}
	must(t0, CmdAuthorityPut, authority())
	must(t0, CmdProvisionerPut, ProvisionerPut{Provisioner: Provisioner{Name: "acme", Kind: KindACME, Authority: "default"}})
	must(t0, CmdACMEAccountNew, ACMEAccountNew{Account: ACMEAccount{ID: "acc1", Provisioner: "acme", Thumbprint: "th1"}})
	must(t0, CmdACMEOrderNew, ACMEOrderNew{
		Order:  ACMEOrder{ID: "o1", Provisioner: "acme", Account: "acc1", Authzs: []string{"z1"}, Expires: t0.Add(time.Hour)},
		Authzs: []ACMEAuthz{{ID: "z1", Account: "acc1", Expires: t0.Add(time.Hour), Challenges: []ACMEChallenge{{Type: "dns-01", Status: ACMEPending}}}}})
	start := func(at time.Time, attempt string) error {
		return apply(t, f, b.entry(CmdACMEChallenge, at, ACMEChallengeUpdate{Authz: "z1", Account: "acc1", Type: "dns-01",
			Status: ACMEProcessing, Attempt: attempt, Deadline: at.Add(30 * time.Second)}))
	}
	if err := start(t0, "a1"); err != nil {
		t.Fatal(err)
	}
	if err := start(t0.Add(10*time.Second), "a2"); !errors.Is(err, ErrACMEChallenge) {
		t.Fatalf("a second start before the deadline: %v", err)
	}
	if err := start(t0.Add(31*time.Second), "a2"); err != nil {
		t.Fatalf("a start past the deadline: %v", err)
	}
	late := ACMEChallengeUpdate{Authz: "z1", Account: "acc1", Type: "dns-01", Status: ACMEValid, Attempt: "a1"}
	if err := apply(t, f, b.entry(CmdACMEChallenge, t0.Add(32*time.Second), late)); !errors.Is(err, ErrACMEChallenge) {
		t.Fatalf("the dead attempt's result: %v", err)
	}
	late.Attempt = "a2"
	must(t0.Add(33*time.Second), CmdACMEChallenge, late)
	z, _ := f.ACMEAuthz("z1")
	if z.Status != ACMEValid {
		t.Fatalf("authz %+v", z)
	}
}

// Orders and authorizations go once expired; certificates stay.
func TestACMEPruneDropsExpiredOrders(t *testing.T) {
	f := openTest(t)
	b := &logBuilder{t: t}
	var logs []*raft.Log
	add := func(typ CmdType, at time.Time, p any) { logs = append(logs, b.entry(typ, at, p)) }
	add(CmdAuthorityPut, t0, authority())
	acmeLog(b, add)
	f.ApplyBatch(logs)
	if f.HasACMEExpiredBefore(t0) || !f.HasACMEExpiredBefore(t0.Add(2*time.Hour)) {
		t.Fatal("HasACMEExpiredBefore")
	}
	if err := apply(t, f, b.entry(CmdACMEPrune, t0.Add(2*time.Hour), ACMEPrune{Before: t0.Add(2 * time.Hour)})); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.ACMEOrder("o1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("order after prune: %v", err)
	}
	if _, err := f.ACMEAuthz("z1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("authorization after prune: %v", err)
	}
	if ids, _ := f.ACMEOrders("acc1", "", 10); len(ids) != 0 {
		t.Fatalf("the account still lists %v", ids)
	}
	if _, err := f.Cert("acme1"); err != nil {
		t.Fatalf("the certificate went with its order: %v", err)
	}
	if f.HasACMEExpiredBefore(t0.Add(2 * time.Hour)) {
		t.Fatal("something is left to prune")
	}
}

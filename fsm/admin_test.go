package fsm

import (
	"errors"
	"testing"
	"time"
)

// adminCert is a certificate of the admin authority, as admin_create and
// admin_renew carry it.
func adminCert(serial, renews string, notAfter time.Time) *Cert {
	return &Cert{Serial: serial, Authority: "default", Issuer: "1", Subject: "CN=admin x", NotBefore: t0,
		NotAfter: notAfter, RenewedFrom: renews, DER: []byte("der-" + serial)}
}

// The guard counts usable admins: an admin role, not revoked, not
// expiring within UsableMargin of the entry's time, its certificate not
// revoked. Withdrawing by certificate serial revokes record and
// certificate together.
func TestAdminWithdrawKeepsAUsableAdmin(t *testing.T) {
	f, b := lifecycle(t)
	create := func(ad Admin, c *Cert) {
		t.Helper()
		if err := apply(t, f, b.entry(CmdAdminCreate, t0, AdminCreate{Admin: ad, Cert: c})); err != nil {
			t.Fatal(err)
		}
	}
	create(Admin{ID: "root", Name: "root", Role: "admin", Hash: hashOf("root")}, nil)
	create(Admin{ID: "soon", Name: "soon", Role: "admin", Hash: hashOf("soon"), ExpiresAt: t0.Add(12 * time.Hour)}, nil)
	create(Admin{ID: "ops", Name: "ops", Role: "operator", Hash: hashOf("ops")}, nil)
	create(Admin{ID: "cert", Name: "cert", Role: "admin", CertSerial: "a1", ExpiresAt: t0.Add(30 * 24 * time.Hour)}, adminCert("a1", "", t0.Add(30*24*time.Hour)))
	withdraw := func(w AdminWithdraw, at time.Time) error {
		t.Helper()
		return apply(t, f, b.entry(CmdAdminWithdraw, at, w))
	}

	// A legacy state: the certificate revoked, the record not. It does not count.
	if err := apply(t, f, b.entry(CmdRevoke, t0, Revoke{Serial: "a1"})); err != nil {
		t.Fatal(err)
	}
	before := f.Digest()
	if err := withdraw(AdminWithdraw{ID: "root"}, t0); !errors.Is(err, ErrLastAdmin) {
		t.Fatalf("withdrawing root beside an admin expiring in 12h and one with a revoked certificate: %v", err)
	}
	if f.Digest() != before {
		t.Fatal("a refused withdrawal changed the state")
	}
	// A new certificate admin is usable: root may go. By serial, the
	// record and the certificate go together; a retry changes nothing.
	create(Admin{ID: "bob", Name: "bob", Role: "admin", CertSerial: "b1", ExpiresAt: t0.Add(30 * 24 * time.Hour)}, adminCert("b1", "", t0.Add(30*24*time.Hour)))
	if err := withdraw(AdminWithdraw{ID: "root"}, t0); err != nil {
		t.Fatal(err)
	}
	if err := withdraw(AdminWithdraw{Serial: "b1", Reason: 1, By: "cert:b1"}, t0); !errors.Is(err, ErrLastAdmin) {
		t.Fatalf("bob revoking his own certificate, the last usable admin: %v", err)
	}
	// Twenty-nine days on, bob expires within a day: no admin is usable,
	// and bob, still active, is not withdrawn either.
	if err := withdraw(AdminWithdraw{Serial: "b1"}, t0.Add(29*24*time.Hour+time.Hour)); !errors.Is(err, ErrLastAdmin) {
		t.Fatalf("withdrawing bob near expiry: %v", err)
	}
	create(Admin{ID: "carol", Name: "carol", Role: "admin", Hash: hashOf("carol")}, nil)
	for range 2 {
		if err := withdraw(AdminWithdraw{Serial: "b1", Reason: 1, By: "cert:b1"}, t0); err != nil {
			t.Fatal(err)
		}
	}
	bob, _ := f.AdminByCert("b1")
	c, _ := f.Cert("b1")
	if bob.RevokedAt.IsZero() || !c.Revoked() || c.RevocationReason != 1 || c.RevokedBy != "cert:b1" {
		t.Errorf("after withdrawal: admin %+v, certificate revoked %v reason %d by %s", bob, c.Revoked(), c.RevocationReason, c.RevokedBy)
	}
	if rs, _ := f.Revoked("default", "1", t0); len(rs) != 2 { // a1 and b1, for the CRL
		t.Errorf("revoked list %+v", rs)
	}
	// Operators and expired admins go freely; unknown IDs are refused.
	if err := withdraw(AdminWithdraw{ID: "ops"}, t0); err != nil {
		t.Error(err)
	}
	if err := withdraw(AdminWithdraw{ID: "soon"}, t0.Add(13*time.Hour)); err != nil {
		t.Error(err)
	}
	if err := withdraw(AdminWithdraw{ID: "nobody"}, t0); !errors.Is(err, ErrNotFoundAdmin) {
		t.Errorf("unknown admin: %v", err)
	}
}

// A renewal moves the admin record to the new certificate; the old one no
// longer renews, and neither does a revoked or expired admin's.
func TestAdminRenewMovesTheRecord(t *testing.T) {
	f, b := lifecycle(t)
	day := 24 * time.Hour
	apply(t, f, b.entry(CmdAdminCreate, t0, AdminCreate{Admin: Admin{ID: "al", Name: "al", Role: "admin", CertSerial: "c1", ExpiresAt: t0.Add(30 * day)}, Cert: adminCert("c1", "", t0.Add(30*day))}))
	apply(t, f, b.entry(CmdAdminCreate, t0, AdminCreate{Admin: Admin{ID: "root", Name: "root", Role: "admin", Hash: hashOf("root")}}))
	renew := func(c *Cert, at time.Time) error {
		t.Helper()
		return apply(t, f, b.entry(CmdAdminRenew, at, AdminRenew{Cert: *c}))
	}
	next := adminCert("c2", "c1", t0.Add(50*day))
	for range 2 { // the second is a retried proposal
		if err := renew(next, t0.Add(20*day)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.AdminByCert("c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the old certificate still names the admin: %v", err)
	}
	al, err := f.AdminByCert("c2")
	if err != nil || al.ID != "al" || !al.ExpiresAt.Equal(t0.Add(50*day)) || !al.CreatedAt.Equal(t0) {
		t.Fatalf("moved record %+v, %v", al, err)
	}
	if c, _ := f.Cert("c2"); !c.IssuedAt.Equal(t0.Add(20 * day)) {
		t.Errorf("new certificate record %+v", c)
	}
	if err := renew(adminCert("c3", "c1", t0.Add(50*day)), t0.Add(20*day)); !errors.Is(err, ErrAdminInactive) {
		t.Errorf("renewing the superseded certificate: %v", err)
	}
	if err := renew(adminCert("c3", "c2", t0.Add(80*day)), t0.Add(50*day)); !errors.Is(err, ErrCertExpired) {
		t.Errorf("renewing an expired admin certificate: %v", err)
	}
	other := adminCert("c3", "c2", t0.Add(80*day))
	other.Subject = "CN=admin root"
	if err := renew(other, t0.Add(30*day)); !errors.Is(err, ErrNameNotAllowed) {
		t.Errorf("renewal to another subject: %v", err)
	}
	apply(t, f, b.entry(CmdAdminWithdraw, t0, AdminWithdraw{ID: "al"}))
	if err := renew(adminCert("c3", "c2", t0.Add(80*day)), t0.Add(30*day)); !errors.Is(err, ErrCertRevoked) {
		t.Errorf("renewal by a withdrawn admin: %v", err)
	}
}

// A recovery credential is a short-lived admin token that creates one
// admin and is used up in the same entry.
func TestRecoveryCredentialIsUsedOnce(t *testing.T) {
	f, b := lifecycle(t)
	create := func(c AdminCreate, at time.Time) error {
		t.Helper()
		return apply(t, f, b.entry(CmdAdminCreate, at, c))
	}
	rec := Admin{ID: "r1", Name: "recovery", Role: "admin", Hash: hashOf("r1"), ExpiresAt: t0.Add(time.Hour), Recovery: true}
	long := rec
	long.ID, long.Hash, long.ExpiresAt = "r0", hashOf("r0"), t0.Add(3*time.Hour)
	if err := create(AdminCreate{Admin: long}, t0); !errors.Is(err, ErrAdminInactive) {
		t.Errorf("a recovery credential living 3 hours: %v", err)
	}
	if err := create(AdminCreate{Admin: rec}, t0.Add(2*time.Hour)); !errors.Is(err, ErrAdminInactive) {
		t.Errorf("a recovery credential expired when committed: %v", err)
	}
	for range 2 { // a node that crashed before removing its request proposes it again
		if err := create(AdminCreate{Admin: rec}, t0); err != nil {
			t.Fatal(err)
		}
	}
	if a, _ := f.AdminByHash(hashOf("r1")); a.Usable(t0) {
		t.Error("a recovery credential counts as a usable admin")
	}
	carol := AdminCreate{Admin: Admin{ID: "carol", Name: "carol", Role: "admin", Hash: hashOf("carol")}, Consume: "r1"}
	if err := create(carol, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if a, _ := f.AdminByHash(hashOf("r1")); a.RevokedAt.IsZero() {
		t.Error("the recovery credential survived its use")
	}
	dave := AdminCreate{Admin: Admin{ID: "dave", Name: "dave", Role: "admin", Hash: hashOf("dave")}, Consume: "r1"}
	if err := create(dave, t0.Add(time.Minute)); !errors.Is(err, ErrAdminInactive) {
		t.Errorf("a second admin from one recovery credential: %v", err)
	}
	if err := create(AdminCreate{Admin: rec}, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err) // the same request again: a no-op, it stays used
	}
	if a, _ := f.AdminByHash(hashOf("r1")); a.RevokedAt.IsZero() {
		t.Error("a replayed recovery request revived the credential")
	}
	// A leaked recovery credential can be withdrawn, usable admins or not.
	r2 := rec
	r2.ID, r2.Hash = "r2", hashOf("r2")
	if err := create(AdminCreate{Admin: r2}, t0); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, f, b.entry(CmdAdminWithdraw, t0, AdminWithdraw{ID: "carol"})); !errors.Is(err, ErrLastAdmin) {
		t.Errorf("withdrawing carol beside a recovery credential: %v", err) // it is not a usable admin
	}
	if err := apply(t, f, b.entry(CmdAdminWithdraw, t0, AdminWithdraw{ID: "r2"})); err != nil {
		t.Errorf("withdrawing a recovery credential: %v", err)
	}
}

// The admin commands of this release are proposed only once every server
// reads log format 2: older binaries would panic on them. An admin_create
// without recovery fields is still written as version 2, which they apply.
func TestAdminCommandsNeedFormat2(t *testing.T) {
	for _, tt := range []struct {
		t       CmdType
		payload any
	}{
		{CmdAdminWithdraw, AdminWithdraw{ID: "a"}},
		{CmdAdminRenew, AdminRenew{}},
		{CmdAdminCreate, AdminCreate{Admin: Admin{Recovery: true}}},
		{CmdAdminCreate, AdminCreate{Consume: "r1"}},
	} {
		env, err := NewEnvelope(tt.t, "x", tt.payload)
		if err != nil {
			t.Fatal(err)
		}
		if env.Format() != 2 {
			t.Errorf("%s version %d: format %d, want 2", CommandName(tt.t), env.Version, env.Format())
		}
	}
	env, _ := NewEnvelope(CmdAdminCreate, "x", AdminCreate{Admin: Admin{ID: "a", Name: "a", Role: "admin"}})
	if env.Version != 2 || env.Format() != 0 {
		t.Errorf("an ordinary admin_create: version %d, format %d; want version 2, which older releases apply", env.Version, env.Format())
	}
}

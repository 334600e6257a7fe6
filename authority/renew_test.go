package authority

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
	"github.com/quorumca/quorumca/internal/keyrate"
)

func limiter(perMinute float64, burst int) *keyrate.Limiter {
	return keyrate.New(perMinute/60, burst, 0)
}

// issueFor gets a certificate for name with a new key.
func (c *testCA) issueFor(t *testing.T, name string) (*Issued, crypto.Signer, *x509.Certificate) {
	t.Helper()
	k := ecKey(t, elliptic.P256())
	iss, err := c.signToken(context.Background(), csrPEM(t, k, &x509.CertificateRequest{DNSNames: []string{name}}), c.token(t, name))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(iss.Cert.DER)
	if err != nil {
		t.Fatal(err)
	}
	return iss, k, leaf
}

func parsed(t *testing.T, iss *Issued) *x509.Certificate {
	t.Helper()
	leaf, err := x509.ParseCertificate(iss.Cert.DER)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// What "the key matches" means: without a CSR the key is the renewed
// certificate's, with one the CSR's. Asked again with the successor's key,
// a renewal answers the successor itself; with any other key, it is
// refused as renewed.
func TestRenewingARenewedCertificate(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	names := &x509.CertificateRequest{DNSNames: []string{"dev.example.com"}}

	// Key kept: the same successor again; a new key is refused.
	_, _, leaf := c.issueFor(t, "keep.example.com")
	first, err := c.Renew(ctx, RenewRequest{PeerCert: leaf})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Renew(ctx, RenewRequest{PeerCert: leaf})
	if err != nil || again.Cert.Serial != first.Cert.Serial || string(again.Cert.DER) != string(first.Cert.DER) || len(again.Chain) != len(first.Chain) {
		t.Fatalf("renewal asked again: %v, %+v", err, again)
	}
	k3 := ecKey(t, elliptic.P256())
	csr := csrPEM(t, k3, &x509.CertificateRequest{DNSNames: []string{"keep.example.com"}})
	if _, err := c.Renew(ctx, RenewRequest{PeerCert: leaf, CSR: csr}); !errors.Is(err, fsm.ErrCertRenewed) {
		t.Fatalf("renewed certificate asked again with a new key: %v", err)
	}

	// Key rotated: the same CSR key again gets the successor; the old key
	// (no CSR) or a third key is refused.
	_, _, leaf = c.issueFor(t, "dev.example.com")
	k2 := ecKey(t, elliptic.P256())
	rotated, err := c.Renew(ctx, RenewRequest{PeerCert: leaf, CSR: csrPEM(t, k2, names)})
	if err != nil {
		t.Fatal(err)
	}
	retry, err := c.Renew(ctx, RenewRequest{PeerCert: leaf, CSR: csrPEM(t, k2, names)}) // a new CSR, the same key
	if err != nil || retry.Cert.Serial != rotated.Cert.Serial {
		t.Fatalf("rotation retried with the same key: %v %+v", err, retry)
	}
	for what, csr := range map[string][]byte{"the old key": nil, "a third key": csrPEM(t, ecKey(t, elliptic.P256()), names)} {
		if _, err := c.Renew(ctx, RenewRequest{PeerCert: leaf, CSR: csr}); !errors.Is(err, fsm.ErrCertRenewed) {
			t.Errorf("renewal after rotation with %s: %v", what, err)
		}
	}
	// The successor renews in turn, and its lineage is the first serial.
	next, err := c.Renew(ctx, RenewRequest{PeerCert: parsed(t, rotated)})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := c.f.Cert(next.Cert.Serial)
	if rec.LineageID() != leaf.SerialNumber.Text(16) {
		t.Errorf("lineage %q, want %q", rec.LineageID(), leaf.SerialNumber.Text(16))
	}

	// Revoked after its renewal by someone else: no answer, not even the
	// successor.
	_, _, leaf = c.issueFor(t, "gone.example.com")
	if _, err := c.Renew(ctx, RenewRequest{PeerCert: leaf}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(leaf.SerialNumber), Reason: "keyCompromise", Admin: c.admin}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Renew(ctx, RenewRequest{PeerCert: leaf}); !errors.Is(err, fsm.ErrCertRevoked) {
		t.Fatalf("renewal of a renewed then revoked certificate: %v", err)
	}
}

// revoke_on_renew: the renewed certificate is revoked (superseded) by the
// renewal itself; the successor is still the answer to a retry, and the
// CRL lists the old one once the leader re-signs it.
func TestRevokeOnRenew(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	p, _ := c.f.Provisioner("default")
	p.Policy.RevokeOnRenew = true
	if err := c.PutProvisioner(ctx, *p, p.Version); err != nil {
		t.Fatal(err)
	}
	_, _, leaf := c.issueFor(t, "rotate.example.com")
	first, err := c.Renew(ctx, RenewRequest{PeerCert: leaf})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := c.f.Cert(SerialHex(leaf.SerialNumber))
	if !old.Revoked() || old.RevocationReason != fsm.ReasonSuperseded || old.RenewedBy != first.Cert.Serial {
		t.Fatalf("renewed record %+v", old)
	}
	if again, err := c.Renew(ctx, RenewRequest{PeerCert: leaf}); err != nil || again.Cert.Serial != first.Cert.Serial {
		t.Fatalf("retry after revoke_on_renew: %v", err)
	}
	if err := c.RefreshStaleCRLs(ctx); err != nil {
		t.Fatal(err)
	}
	crl, _ := c.CRL(ctx, DefaultAuthority, "", -1)
	rl, err := x509.ParseRevocationList(crl.DER)
	if err != nil {
		t.Fatal(err)
	}
	if len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 ||
		rl.RevokedCertificateEntries[0].ReasonCode != fsm.ReasonSuperseded {
		t.Fatalf("CRL entries %+v", rl.RevokedCertificateEntries)
	}
	if stale, _ := c.f.StaleCRLs(); len(stale) != 0 {
		t.Errorf("CRL still stale after the leader signed it: %v", stale)
	}
}

// Renewals and holder revocations are limited per lineage (429 with
// Retry-After at the API); admins are not.
func TestLineageLimits(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	c.renewals, c.holderRevocations = limiter(1, 3), limiter(1, 2)
	_, _, leaf := c.issueFor(t, "busy.example.com")
	for i := range 3 {
		iss, err := c.Renew(ctx, RenewRequest{PeerCert: leaf})
		if err != nil {
			t.Fatalf("renewal %d of a burst of 3: %v", i+1, err)
		}
		leaf = parsed(t, iss) // down the lineage: one bucket for all
	}
	_, err := c.Renew(ctx, RenewRequest{PeerCert: leaf})
	if rl := errs.Of(err); !errors.Is(err, ErrRateLimited) || rl.Kind != errs.RateLimited || rl.RetryAfter <= 0 {
		t.Fatalf("4th renewal in a lineage: %v", err)
	}
	// Another lineage has its own bucket.
	_, _, other := c.issueFor(t, "calm.example.com")
	if _, err := c.Renew(ctx, RenewRequest{PeerCert: other}); err != nil {
		t.Fatalf("another lineage: %v", err)
	}

	// Holder revocations: each certificate of a lineage it still holds
	// counts; one revoked already counts for nothing.
	c.renewals = limiter(1, 10)
	_, _, a := c.issueFor(t, "rev.example.com")
	lineage := []*x509.Certificate{a}
	for range 2 {
		iss, err := c.Renew(ctx, RenewRequest{PeerCert: lineage[len(lineage)-1]})
		if err != nil {
			t.Fatal(err)
		}
		lineage = append(lineage, parsed(t, iss))
	}
	for i, cert := range lineage[:2] {
		if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(cert.SerialNumber), Holder: cert}); err != nil {
			t.Fatalf("holder revocation %d: %v", i+1, err)
		}
		for range 5 { // again: done already, not counted
			if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(cert.SerialNumber), Holder: cert}); err != nil {
				t.Fatalf("holder revocation %d again: %v", i+1, err)
			}
		}
	}
	last := lineage[2]
	if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(last.SerialNumber), Holder: last}); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("3rd holder revocation in a lineage with a burst of 2: %v", err)
	}
	for range 5 {
		if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(last.SerialNumber), Admin: c.admin}); err != nil {
			t.Fatalf("admin revocation: %v", err)
		}
	}
}

// Whoever holds a replaced or revoked certificate of a lineage (a thief
// after the device rotated its key) renews nothing with it and cannot
// spend the lineage's budgets either: the device still renews and revokes.
func TestOldCertificatesDoNotSpendTheLineageBudget(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	c.renewals, c.holderRevocations = limiter(1, 2), limiter(1, 2)
	_, _, stolen := c.issueFor(t, "thief.example.com")
	k := ecKey(t, elliptic.P256())
	iss, err := c.Renew(ctx, RenewRequest{PeerCert: stolen, CSR: csrPEM(t, k, &x509.CertificateRequest{DNSNames: []string{"thief.example.com"}})})
	if err != nil {
		t.Fatal(err)
	}
	current := parsed(t, iss)
	if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(stolen.SerialNumber), Admin: c.admin, Reason: "keyCompromise"}); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, err := c.Renew(ctx, RenewRequest{PeerCert: stolen}); errors.Is(err, ErrRateLimited) || err == nil {
			t.Fatalf("renewing the stolen, replaced and revoked certificate: %v", err)
		}
		if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(stolen.SerialNumber), Holder: stolen}); err != nil {
			t.Fatalf("self-revocation of the revoked certificate: %v", err)
		}
	}
	if _, err := c.Renew(ctx, RenewRequest{PeerCert: current}); err != nil {
		t.Fatalf("the device renews its current certificate after the thief's attempts: %v", err)
	}
	if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(current.SerialNumber), Holder: current}); err != nil {
		t.Fatalf("the device revokes its current certificate after the thief's attempts: %v", err)
	}
}

// While a server of the previous release is in the cluster, renewals go
// as CmdIssue (which that release applies alike: renewing once takes
// effect when every server runs this release) and a revocation signs the
// CRL at once, as before.
func TestRenewalAndRevocationDuringARollingUpgrade(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	c.raft.(*localRaft).oldServer = true
	_, _, leaf := c.issueFor(t, "upgrade.example.com")
	a, err := c.Renew(ctx, RenewRequest{PeerCert: leaf})
	if err != nil {
		t.Fatalf("renewal during an upgrade: %v", err)
	}
	b, err := c.Renew(ctx, RenewRequest{PeerCert: leaf})
	if err != nil || b.Cert.Serial == a.Cert.Serial {
		t.Fatalf("a second renewal during an upgrade: %v (the older release allows it)", err)
	}
	if _, err := c.Revoke(ctx, RevokeRequest{Serial: a.Cert.Serial, Admin: c.admin}); err != nil {
		t.Fatal(err)
	}
	crl, _ := c.CRL(ctx, DefaultAuthority, "", -1)
	rl, _ := x509.ParseRevocationList(crl.DER)
	if len(rl.RevokedCertificateEntries) != 1 {
		t.Fatalf("CRL right after a revocation during an upgrade: %d entries", len(rl.RevokedCertificateEntries))
	}
	if rec, _ := c.f.Cert(a.Cert.Serial); rec.LineageID() != a.Cert.Serial {
		t.Errorf("a CmdIssue renewal carried a lineage: %+v", rec)
	}
}

package authority

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// renewAdmin renews the current certificate of a certificate admin: same
// subject, same lifetime, from the admin authority. The admin record moves
// to the new certificate in the same entry (admin_renew), so the old one
// stops authenticating; the state machine re-checks that the admin and the
// old certificate are neither revoked nor expired.
func (ca *CA) renewAdmin(ctx context.Context, rec *fsm.Cert, leaf *x509.Certificate, csrPEM []byte) (*Issued, error) {
	pub := leaf.PublicKey
	if len(csrPEM) > 0 {
		csr, err := ParseCSR(csrPEM)
		if err != nil {
			return nil, err
		}
		pol := DefaultPolicy()
		if err := checkKeyPolicy(&pol, csr.PublicKey); err != nil {
			return nil, err
		}
		pub = csr.PublicKey
	}
	adm, err := ca.state.AdminByCert(rec.Serial)
	if errors.Is(err, fsm.ErrNotFound) {
		if iss := ca.adminSuccessor(rec, pub); iss != nil {
			return iss, nil
		}
		return nil, refuse(fsm.ErrAdminInactive, "certificate %s is not an admin's current certificate (renewed or withdrawn)", rec.Serial)
	}
	if err != nil {
		return nil, err
	}
	if !adm.RevokedAt.IsZero() {
		return nil, refuse(fsm.ErrAdminInactive, "admin %s has been revoked", adm.Name)
	}
	if !ca.now().Before(rec.NotAfter) {
		return nil, refuse(fsm.ErrCertExpired, "admin certificate %s has expired", rec.Serial)
	}
	a, err := ca.state.Authority(AdminAuthority)
	if err != nil {
		return nil, refuse(fsm.ErrCertUnknown, "certificate %s is from unknown authority %s", rec.Serial, rec.Authority)
	}
	ttl := min(rec.NotAfter.Sub(rec.NotBefore)-backdate, 365*24*time.Hour)
	next, chain, err := ca.signSpread(ctx, a, pub, &certNames{cn: leaf.Subject.CommonName}, max(ttl, minCertTTL),
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	if err != nil {
		return nil, err
	}
	next.RenewedFrom, next.Requester = rec.Serial, "renewal:"+rec.Serial
	// Every node must see the move when this returns: the old certificate
	// authenticates nowhere from then on.
	if err := ca.proposeAndPropagate(asActor(ctx, Actor(adm)), fsm.CmdAdminRenew, fsm.AdminRenew{Cert: *next}); err != nil {
		return nil, err
	}
	return &Issued{Cert: *next, Chain: chain}, nil
}

// adminSuccessor answers a renewal asked again after its answer was lost:
// the admin's current certificate, if it renewed rec for the same key (the
// handshake, or the CSR, proved possession of it). Admins are few; this
// runs only when the presented certificate is no admin's current one.
func (ca *CA) adminSuccessor(rec *fsm.Cert, pub crypto.PublicKey) *Issued {
	as, err := ca.state.Admins()
	if err != nil {
		return nil
	}
	for _, a := range as {
		if a.CertSerial == "" || !a.RevokedAt.IsZero() {
			continue
		}
		next, err := ca.state.Cert(a.CertSerial)
		if err != nil || next.RenewedFrom != rec.Serial || next.Revoked() {
			continue
		}
		c, err := x509.ParseCertificate(next.DER)
		if err != nil {
			return nil
		}
		if k, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
			return nil
		}
		auth, err := ca.state.Authority(next.Authority)
		if err != nil || auth.Issuer(next.Issuer) == nil {
			return nil
		}
		return &Issued{Cert: *next, Chain: auth.Issuer(next.Issuer).Chain}
	}
	return nil
}

// RecoveryTTL is how long a break-glass recovery token lives.
const RecoveryTTL = time.Hour

// NewRecoverySecret makes a recovery admin token and its hash: the token is
// shown once on the console, the hash goes to the node.
func NewRecoverySecret() (token string, hash []byte) {
	token = newSecret(adminPrefix)
	hash, _ = parseSecret(adminPrefix, token)
	return token, hash
}

// RecoverAdmin stores a break-glass recovery credential: an admin token
// that may only create one admin, then is used up, and expires at expires.
// ID, hash and expiry come from the request written on the console, so
// proposing it again (after a crash) is a no-op.
func (ca *CA) RecoverAdmin(ctx context.Context, id string, hash []byte, expires time.Time) error {
	if id == "" || len(id) > 64 || len(hash) != 32 {
		return fmt.Errorf("%w: malformed recovery request", ErrInvalidRequest)
	}
	ad := fsm.Admin{ID: id, Name: "recovery", Role: RoleAdmin, Hash: hash, ExpiresAt: expires.UTC(), Recovery: true}
	return ca.proposeAndPropagate(ctx, fsm.CmdAdminCreate, fsm.AdminCreate{Admin: ad})
}

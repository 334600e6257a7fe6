package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// Revocation reasons by their RFC 5280 names. certificateHold and
// removeFromCRL are not offered: a revocation here is final.
var revocationReasons = map[string]int{
	"unspecified": 0, "keyCompromise": 1, "cACompromise": 2, "affiliationChanged": 3,
	"superseded": 4, "cessationOfOperation": 5, "privilegeWithdrawn": 9, "aACompromise": 10,
}

// ReasonName is the RFC 5280 name of a reason code.
func ReasonName(code int) string {
	for n, c := range revocationReasons {
		if c == code {
			return n
		}
	}
	return fmt.Sprintf("reason(%d)", code)
}

// RevokeRequest revokes a certificate. One of Admin, Holder, ACMEAccount
// or CertKey authorizes it.
type RevokeRequest struct {
	Serial string
	Reason string // RFC 5280 name; "" is unspecified
	Admin  *fsm.Admin
	Holder *x509.Certificate // the TLS client certificate
	// ACMEAccount: the ACME account (ACMERequester) asking; it may revoke
	// the certificates it ordered.
	ACMEAccount string
	// CertKey: the request is signed with this key (ACME revokeCert
	// signed with the certificate's own key); it must be the
	// certificate's.
	CertKey crypto.PublicKey
}

// Revoked is a revocation's outcome: the certificate's record, and the
// nodes that confirmed they applied it before the answer (ConfirmedBy) or
// did not (Unconfirmed: down, paused, cut off or behind; they still
// confirm with the leader before serving a status).
type Revoked struct {
	*fsm.Cert
	ConfirmedBy, Unconfirmed []string
}

// Revoke revokes a certificate. When it returns, the revocation is
// committed and every node alive in the leader's view has applied it or is
// named in Unconfirmed, so OCSP, the certificate's record and renewals
// anywhere see it; the issuer's CRL lists it within the leader's CRL
// interval. A committed revocation is answered as done: the CRL not being
// re-signed yet is no failure.
func (ca *CA) Revoke(ctx context.Context, req RevokeRequest) (*Revoked, error) {
	serial, err := NormalizeSerial(req.Serial)
	if err != nil {
		return nil, err
	}
	reason, ok := revocationReasons[req.Reason]
	if req.Reason == "" {
		reason, ok = 0, true
	}
	if !ok {
		return nil, fmt.Errorf("%w: reason %q: use an RFC 5280 reason name such as keyCompromise", ErrInvalidRequest, truncate(req.Reason))
	}
	rec, err := lookup(ctx, ca, func() (*fsm.Cert, error) { return ca.state.Cert(serial) })
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, refuse(fsm.ErrCertUnknown, "no certificate with serial %s", serial)
	}
	if err != nil {
		return nil, err
	}
	// The current certificate of a certificate admin is an admin
	// credential: revoking it withdraws the admin (its record is written
	// in the same entry as the certificate, so it is here too).
	adm, aerr := ca.state.AdminByCert(serial)
	if aerr != nil && !errors.Is(aerr, fsm.ErrNotFound) {
		return nil, aerr
	}
	var by string
	switch {
	case req.Admin != nil && adm != nil:
		if err := Authorize(req.Admin, PermConfigure); err != nil {
			return nil, fmt.Errorf("%w: certificate %s is the credential of admin %s; withdrawing it is an admin change (role admin)", ErrForbidden, serial, adm.Name)
		}
		by = Actor(req.Admin)
	case req.Admin != nil:
		if err := Authorize(req.Admin, PermOperate); err != nil {
			return nil, err
		}
		by = Actor(req.Admin)
	case req.Holder != nil && bytes.Equal(req.Holder.Raw, rec.DER):
		if rec.Revoked() {
			// Done already: nothing to write, and nothing counted against
			// the lineage, whose current certificate may need the budget.
			return &Revoked{Cert: rec}, nil
		}
		if err := limitLineage(ca.holderRevocations, rec, "revocations"); err != nil {
			return nil, err
		}
		by = "cert:" + rec.Serial
		ctx = asActor(ctx, by)
	case req.Holder != nil:
		return nil, fmt.Errorf("%w: a client certificate may only revoke itself", ErrForbidden)
	case req.ACMEAccount != "" || req.CertKey != nil:
		if !holdsCert(rec, req.ACMEAccount, req.CertKey) {
			return nil, fmt.Errorf("%w: the account did not order this certificate, nor is the request signed with its key", ErrForbidden)
		}
		if rec.Revoked() {
			return nil, refuse(ErrAlreadyRevoked, "certificate %s is already revoked", serial)
		}
		by = "cert:" + rec.Serial
		if req.ACMEAccount != "" {
			by = req.ACMEAccount
		}
		ctx = asActor(ctx, by)
	default:
		return nil, fmt.Errorf("%w: revocation needs an admin token or the certificate itself (mTLS)", ErrUnauthenticated)
	}
	in := fsm.Revoke{Serial: serial, Reason: reason, By: by}
	if adm != nil {
		// No fallback for an older cluster: only admin_withdraw keeps a
		// usable admin.
		err = ca.propose(ctx, fsm.CmdAdminWithdraw, fsm.AdminWithdraw{Serial: serial, Reason: reason, By: by})
	} else if err = ca.proposeUpgraded(ctx, fsm.CmdRevokeDeferCRL, in); errors.Is(err, fsm.ErrUpgrading) {
		err = ca.revokeSigningCRL(ctx, rec, in)
	}
	if err != nil {
		return nil, err
	}
	// The record is read back from this node's state.
	if err := ca.raft.Barrier(ctx); err != nil {
		return nil, err
	}
	confirmed, unconfirmed, err := ca.raft.Propagate(ctx)
	if err != nil {
		ca.log.Warn("revocation not confirmed by every node", "serial", serial, "err", err)
	}
	rec, err = ca.state.Cert(serial)
	if err != nil {
		return nil, err
	}
	return &Revoked{Cert: rec, ConfirmedBy: confirmed, Unconfirmed: unconfirmed}, nil
}

// ErrAlreadyRevoked: ACME answers a second revocation so (RFC 8555
// section 7.6).
var ErrAlreadyRevoked = errs.New(errs.Conflict, "already_revoked", "certificate already revoked")

// holdsCert: the ACME account ordered rec, or key is rec's key.
func holdsCert(rec *fsm.Cert, account string, key crypto.PublicKey) bool {
	if account != "" {
		return rec.Requester == account
	}
	leaf, err := x509.ParseCertificate(rec.DER)
	return err == nil && SamePublicKey(key, leaf.PublicKey)
}

// revokeSigningCRL is revocation while a server of an older release is in
// the cluster: CmdRevoke, which marks nothing stale, then a CRL signed here
// at once, as that release does.
func (ca *CA) revokeSigningCRL(ctx context.Context, rec *fsm.Cert, in fsm.Revoke) error {
	// The new CRL is signed from this node's state, which must show the
	// revocation first: on a follower it is applied a moment after the
	// leader commits it.
	if err := ca.proposeAndRead(ctx, fsm.CmdRevoke, in); err != nil {
		return err
	}
	if err := ca.RefreshCRL(ctx, rec.Authority, rec.Issuer, true); err != nil {
		// The revocation stands, but nothing else puts it on the CRL before
		// the current one is half through its life: answer 503 so the
		// caller asks again (revoking again changes nothing and signs the
		// CRL).
		ca.log.Warn("CRL not regenerated after revocation", "authority", rec.Authority, "issuer", rec.Issuer, "err", err)
		return fmt.Errorf("%w: %s is revoked, but the CRL could not be regenerated yet: %v", ErrUnavailable, in.Serial, err)
	}
	return nil
}

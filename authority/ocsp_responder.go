package authority

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// A delegated OCSP responder (RFC 6960 4.2.2.2) signs an authority's OCSP
// answers with a key of its own, in the signer like every other key, so
// OCSP never competes with issuance for the issuing key's KMS quota. Each
// issuer certifies the key (id-kp-OCSPSigning, id-pkix-ocsp-nocheck) for a
// short lifetime; the leader renews the certificates well before they end,
// and every answer carries the certificate that vouches for its signer.
// Without one, or on a node that cannot use it, the issuing key signs.

const (
	DefaultOCSPResponderTTL = 7 * 24 * time.Hour
	// A responder certificate cannot be revoked in any way a client checks
	// (nocheck): short lifetimes are the remedy RFC 6960 names.
	maxOCSPResponderTTL = 90 * 24 * time.Hour
	minOCSPResponderTTL = 4 * ocspValidity
)

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1): clients do
// not ask about the responder's own certificate.
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// OCSPResponderRequest gives an authority a delegated OCSP responder.
type OCSPResponderRequest struct {
	Name string        // the authority
	Key  KeySpec       // the responder's key; Create makes it first
	TTL  time.Duration // each certificate's lifetime; 0: DefaultOCSPResponderTTL
}

// SetOCSPResponder certifies a key as an authority's OCSP responder, by
// each of its issuers, and makes every node sign OCSP answers with it. A
// second call replaces the key.
func (ca *CA) SetOCSPResponder(ctx context.Context, req OCSPResponderRequest) (*fsm.OCSPResponder, error) {
	a, err := ca.state.Authority(req.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: no authority named %q", ErrNotFound, truncate(req.Name))
	}
	ttl := orTTL(req.TTL, DefaultOCSPResponderTTL)
	if ttl < minOCSPResponderTTL || ttl > maxOCSPResponderTTL {
		return nil, fmt.Errorf("%w: an OCSP responder's lifetime must be %s to %s", ErrInvalidRequest, minOCSPResponderTTL, maxOCSPResponderTTL)
	}
	if req.Key.URI == "" {
		return nil, fmt.Errorf("%w: an OCSP responder needs a key URI", ErrInvalidRequest)
	}
	key, err := ca.resolveKey(ctx, req.Key)
	if err != nil {
		return nil, err
	}
	if err := ca.ownKey(ctx, a, key); err != nil {
		return nil, err
	}
	expected := uint64(0)
	if cur, err := ca.state.OCSPResponder(a.Name); err == nil {
		expected = cur.Version
	}
	r := fsm.OCSPResponder{Authority: a.Name, KeyURI: key.URI(), TTL: ttl}
	now := ca.now()
	for i := range a.Issuers {
		c, err := ca.responderCert(ctx, a, &a.Issuers[i], key.Public(), ttl, now)
		if err != nil {
			return nil, err
		}
		if c != nil {
			r.Certs = append(r.Certs, *c)
		}
	}
	if len(r.Certs) == 0 {
		return nil, fmt.Errorf("%w: no issuer of %s is valid long enough to certify an OCSP responder", ErrInvalidRequest, a.Name)
	}
	if err := ca.proposeAndRead(ctx, fsm.CmdOCSPResponderPut, fsm.OCSPResponderPut{Responder: r, ExpectedVersion: expected}); err != nil {
		return nil, err
	}
	if _, _, err := ca.raft.Propagate(ctx); err != nil {
		ca.log.Warn("OCSP responder not confirmed by every node", "authority", a.Name, "err", err)
	}
	return ca.state.OCSPResponder(a.Name)
}

// ownKey refuses a responder key that is one of the authority's CA keys:
// it would gain nothing and put an issuing key in a second role.
func (ca *CA) ownKey(ctx context.Context, a *fsm.Authority, key signer.Key) error {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return fmt.Errorf("%w: key %s: unsupported public key", ErrInvalidRequest, key.URI())
	}
	certs := a.Roots()
	for _, iss := range a.Issuers {
		certs = append(certs, iss.Chain...)
	}
	for _, der := range certs {
		if c, err := ca.certs.parse(der); err == nil && pub.Equal(c.PublicKey) {
			return fmt.Errorf("%w: key %s is a CA key of %s; an OCSP responder needs a key of its own", ErrInvalidRequest, key.URI(), a.Name)
		}
	}
	return nil
}

// responderCert has an issuer certify the responder's key. It returns nil
// when the issuer's remaining life is too short to be worth one: the
// issuer's own key then signs its answers to the end.
func (ca *CA) responderCert(ctx context.Context, a *fsm.Authority, iss *fsm.Issuer, pub crypto.PublicKey, ttl time.Duration, now time.Time) (*fsm.OCSPResponderCert, error) {
	issuer, err := ca.certs.parse(iss.Chain[0])
	if err != nil {
		return nil, err
	}
	notAfter := responderNotAfter(issuer, ttl, now)
	if notAfter.Sub(now) < 2*ocspValidity {
		return nil, nil
	}
	tmpl, err := baseTemplate(pub, ttl, now)
	if err != nil {
		return nil, err
	}
	tmpl.NotAfter = notAfter
	tmpl.Subject = pkix.Name{CommonName: a.Name + " OCSP responder", Organization: []string{"quorumca"}}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
	tmpl.ExtraExtensions = []pkix.Extension{{Id: oidOCSPNoCheck, Value: asn1.NullBytes}}
	k, err := ca.signers.Get(ctx, iss.KeyURI)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer %s: %w", ErrUnavailable, iss.ID, err)
	}
	c, err := create(tmpl, issuer, pub, signer.CryptoSigner(ctx, k))
	if err != nil {
		return nil, signError(err)
	}
	return &fsm.OCSPResponderCert{Issuer: iss.ID, DER: c.Raw, NotAfter: c.NotAfter}, nil
}

func responderNotAfter(issuer *x509.Certificate, ttl time.Duration, now time.Time) time.Time {
	if end := now.Add(ttl); end.Before(issuer.NotAfter) {
		return end
	}
	return issuer.NotAfter
}

// renewBefore is how long before its end a responder certificate is
// renewed: a third of its life, and never less than two answers' validity
// (an answer is only signed with a certificate that outlives it).
func renewBefore(ttl time.Duration) time.Duration { return max(ttl/3, 2*ocspValidity) }

// RefreshOCSPResponders renews responder certificates a third of their
// life before they end, certifies the responder for issuers added since,
// and drops certificates of issuers that are gone or expired. The leader
// calls it periodically, and it runs after an issuer is added.
func (ca *CA) RefreshOCSPResponders(ctx context.Context) error {
	as, err := ca.state.Authorities()
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range as {
		errs = append(errs, ca.refreshOCSPResponder(ctx, a))
	}
	return errors.Join(errs...)
}

func (ca *CA) refreshOCSPResponder(ctx context.Context, a *fsm.Authority) error {
	r, err := ca.state.OCSPResponder(a.Name)
	if errors.Is(err, fsm.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	now := ca.now()
	next := fsm.OCSPResponder{Authority: r.Authority, KeyURI: r.KeyURI, TTL: r.TTL}
	changed := false
	var key signer.Key
	var errs []error
	for i := range a.Issuers {
		iss := &a.Issuers[i]
		cur := r.Cert(iss.ID)
		if cur != nil && !now.Before(cur.NotAfter) {
			cur, changed = nil, true // expired: nothing to keep
		}
		issuer, err := ca.certs.parse(iss.Chain[0])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		due := cur == nil || now.After(cur.NotAfter.Add(-renewBefore(r.TTL)))
		// Near the issuer's own end a new certificate would end no later
		// than the current one: no signature for nothing.
		if due && (cur == nil || responderNotAfter(issuer, r.TTL, now).After(cur.NotAfter.Add(time.Minute))) {
			if key == nil {
				if key, err = ca.signers.Get(ctx, r.KeyURI); err != nil {
					return fmt.Errorf("OCSP responder of %s: key %s: %w", a.Name, r.KeyURI, err)
				}
			}
			c, err := ca.responderCert(ctx, a, iss, key.Public(), r.TTL, now)
			if err != nil {
				errs = append(errs, fmt.Errorf("OCSP responder of %s, issuer %s: %w", a.Name, iss.ID, err))
			} else if c != nil {
				cur, changed = c, true
			}
		}
		if cur != nil {
			next.Certs = append(next.Certs, *cur)
		}
	}
	if len(next.Certs) != len(r.Certs) {
		changed = true // an issuer is gone
	}
	if changed {
		err := ca.propose(ctx, fsm.CmdOCSPResponderPut, fsm.OCSPResponderPut{Responder: next, ExpectedVersion: r.Version})
		if errors.Is(err, fsm.ErrVersionMismatch) {
			err = nil // changed meanwhile (an operator, or a previous leader): the next round looks again
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// OCSPResponder returns an authority's delegated OCSP responder.
func (ca *CA) OCSPResponder(name string) (*fsm.OCSPResponder, error) {
	if _, err := ca.Authority(name); err != nil {
		return nil, err
	}
	r, err := ca.state.OCSPResponder(name)
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, fmt.Errorf("%w: authority %s has no delegated OCSP responder", ErrNotFound, name)
	}
	return r, err
}

// DeleteOCSPResponder stops an authority's delegated responder: its
// issuing keys sign OCSP answers again, on every node once this returns.
func (ca *CA) DeleteOCSPResponder(ctx context.Context, name string) error {
	if _, err := ca.OCSPResponder(name); err != nil {
		return err
	}
	if err := ca.proposeAndRead(ctx, fsm.CmdOCSPResponderDel, fsm.OCSPResponderDelete{Authority: name}); err != nil {
		return err
	}
	if _, _, err := ca.raft.Propagate(ctx); err != nil {
		ca.log.Warn("OCSP responder removal not confirmed by every node", "authority", name, "err", err)
	}
	return nil
}

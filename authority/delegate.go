package authority

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// A delegated key is a key of its own, in the signer like every other
// key, that each issuer of an authority certifies for one role, for a
// lifetime the leader renews well before it ends:
//   - a delegated OCSP responder (RFC 6960 4.2.2.2) signs the authority's
//     OCSP answers, so OCSP never competes with issuance for the issuing
//     key's KMS quota; every answer carries the certificate that vouches
//     for its signer, and without one (or on a node that cannot use it)
//     the issuing key signs;
//   - a SCEP RA (RFC 8894 2.1.1) decrypts the envelopes SCEP clients
//     encrypt to it (an RSA key: SCEP's key transport) and signs the
//     replies, so no issuing key is ever an RSA decryption key.

const (
	DefaultOCSPResponderTTL = 7 * 24 * time.Hour
	// A responder certificate cannot be revoked in any way a client checks
	// (nocheck): short lifetimes are the remedy RFC 6960 names.
	maxOCSPResponderTTL = 90 * 24 * time.Hour
	minOCSPResponderTTL = 4 * ocspValidity

	// DefaultSCEPRATTL: clients fetch the RA certificate before each
	// enrollment, so a renewal reaches them at once; a year keeps the
	// certificate in step with the issuer's life without many renewals.
	DefaultSCEPRATTL = 365 * 24 * time.Hour
	maxSCEPRATTL     = 2 * 365 * 24 * time.Hour
	minSCEPRATTL     = 24 * time.Hour
)

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1): clients do
// not ask about the responder's own certificate.
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// oidCMCRA is id-kp-cmcRA (RFC 6402 2.10): a registration authority.
var oidCMCRA = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 28}

// delegateRole is what a role's certificates say and how long they live.
type delegateRole struct {
	name           string // fsm.Role*
	what           string // in messages
	defaultTTL     time.Duration
	minTTL, maxTTL time.Duration
	// minLife: an issuer with less life left certifies no key for the role.
	minLife time.Duration
	// renewBefore: how long before its end a certificate is renewed.
	renewBefore func(ttl time.Duration) time.Duration
	shape       func(a *fsm.Authority, tmpl *x509.Certificate)
	checkKey    func(ctx context.Context, key signer.Key) error
	defaultAlg  string // of a key created for the role
}

var (
	roleOCSP = &delegateRole{
		name: fsm.RoleOCSP, what: "delegated OCSP responder",
		defaultTTL: DefaultOCSPResponderTTL, minTTL: minOCSPResponderTTL, maxTTL: maxOCSPResponderTTL,
		// An answer is only signed with a certificate that outlives it.
		minLife:     2 * ocspValidity,
		renewBefore: func(ttl time.Duration) time.Duration { return max(ttl/3, 2*ocspValidity) },
		shape: func(a *fsm.Authority, tmpl *x509.Certificate) {
			tmpl.Subject = pkix.Name{CommonName: a.Name + " OCSP responder", Organization: []string{"quorumca"}}
			tmpl.KeyUsage = x509.KeyUsageDigitalSignature
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
			tmpl.ExtraExtensions = []pkix.Extension{{Id: oidOCSPNoCheck, Value: asn1.NullBytes}}
		},
		checkKey:   func(context.Context, signer.Key) error { return nil },
		defaultAlg: signer.AlgECP256,
	}
	roleSCEP = &delegateRole{
		name: fsm.RoleSCEP, what: "SCEP RA",
		defaultTTL: DefaultSCEPRATTL, minTTL: minSCEPRATTL, maxTTL: maxSCEPRATTL,
		minLife:     time.Hour,
		renewBefore: func(ttl time.Duration) time.Duration { return ttl / 3 },
		shape: func(a *fsm.Authority, tmpl *x509.Certificate) {
			tmpl.Subject = pkix.Name{CommonName: a.Name + " SCEP RA", Organization: []string{"quorumca"}}
			// Clients pick the recipient of their envelope by key usage;
			// id-kp-cmcRA says what it is, so that no verifier takes a
			// certificate without an EKU for one good for anything.
			tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
			tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{oidCMCRA}
		},
		defaultAlg: signer.AlgRSA2048,
		checkKey: func(ctx context.Context, key signer.Key) error {
			if _, ok := key.Public().(*rsa.PublicKey); !ok {
				return fmt.Errorf("%w: a SCEP RA needs an RSA key (SCEP clients encrypt to it with RSA)", ErrInvalidRequest)
			}
			if _, ok := signer.CryptoDecrypter(ctx, key); !ok {
				return fmt.Errorf("%w: key %s cannot decrypt here: a SCEP RA's key must be a soft or PKCS#11 key", ErrInvalidRequest, key.URI())
			}
			return nil
		},
	}
)

// DelegateRequest gives an authority a delegated key.
type DelegateRequest struct {
	Name string        // the authority
	Key  KeySpec       // the key; Create makes it first
	TTL  time.Duration // each certificate's lifetime; 0: the role's default
}

func roleNamed(name string) (*delegateRole, error) {
	for _, r := range []*delegateRole{roleOCSP, roleSCEP} {
		if r.name == name {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: no delegated key role %q", ErrInvalidRequest, truncate(name))
}

// SetOCSPResponder certifies a key as an authority's OCSP responder, by
// each of its issuers, and makes every node sign OCSP answers with it. A
// second call replaces the key.
func (ca *CA) SetOCSPResponder(ctx context.Context, req DelegateRequest) (*fsm.OCSPResponder, error) {
	return ca.SetDelegate(ctx, fsm.RoleOCSP, req)
}

// SetDelegate certifies a key for a role (fsm.RoleOCSP, fsm.RoleSCEP: an
// RSA key SCEP clients then encrypt their requests to) by each of an
// authority's issuers. A second call replaces the key.
func (ca *CA) SetDelegate(ctx context.Context, roleName string, req DelegateRequest) (*fsm.OCSPResponder, error) {
	role, err := roleNamed(roleName)
	if err != nil {
		return nil, err
	}
	if req.Key.Create && req.Key.Algorithm == "" {
		req.Key.Algorithm = role.defaultAlg
	}
	a, err := ca.state.Authority(req.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: no authority named %q", ErrNotFound, truncate(req.Name))
	}
	ttl := orTTL(req.TTL, role.defaultTTL)
	if ttl < role.minTTL || ttl > role.maxTTL {
		return nil, fmt.Errorf("%w: a %s's lifetime must be %s to %s", ErrInvalidRequest, role.what, role.minTTL, role.maxTTL)
	}
	if req.Key.URI == "" {
		return nil, fmt.Errorf("%w: a %s needs a key URI", ErrInvalidRequest, role.what)
	}
	key, err := ca.resolveKey(ctx, req.Key)
	if err != nil {
		return nil, err
	}
	if err := ca.ownKey(ctx, role, a, key); err != nil {
		return nil, err
	}
	if err := role.checkKey(ctx, key); err != nil {
		return nil, err
	}
	expected := uint64(0)
	if cur, err := ca.state.Delegate(role.name, a.Name); err == nil {
		expected = cur.Version
	}
	r := fsm.OCSPResponder{Authority: a.Name, KeyURI: key.URI(), TTL: ttl}
	now := ca.now()
	for i := range a.Issuers {
		c, err := ca.delegateCert(ctx, role, a, &a.Issuers[i], key.Public(), ttl, now)
		if err != nil {
			return nil, err
		}
		if c != nil {
			r.Certs = append(r.Certs, *c)
		}
	}
	if len(r.Certs) == 0 {
		return nil, fmt.Errorf("%w: no issuer of %s is valid long enough to certify a %s", ErrInvalidRequest, a.Name, role.what)
	}
	if err := ca.proposeAndRead(ctx, fsm.CmdOCSPResponderPut, fsm.OCSPResponderPut{Responder: r, ExpectedVersion: expected, Role: role.name}); err != nil {
		return nil, err
	}
	if _, _, err := ca.raft.Propagate(ctx); err != nil {
		ca.log.Warn(role.what+" not confirmed by every node", "authority", a.Name, "err", err)
	}
	return ca.state.Delegate(role.name, a.Name)
}

// ownKey refuses a delegated key that is a CA key of any authority, or
// another delegated key (of another role, or another authority's): it
// would put one key in two roles, and an RSA decryption key that answers
// strangers (SCEP) must never also sign certificates or OCSP answers.
func (ca *CA) ownKey(ctx context.Context, role *delegateRole, a *fsm.Authority, key signer.Key) error {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return fmt.Errorf("%w: key %s: unsupported public key", ErrInvalidRequest, key.URI())
	}
	as, err := ca.state.Authorities()
	if err != nil {
		return err
	}
	for _, other := range as {
		certs := other.Roots()
		for _, iss := range other.Issuers {
			certs = append(certs, iss.Chain...)
		}
		for _, der := range certs {
			if c, err := ca.certs.parse(der); err == nil && pub.Equal(c.PublicKey) {
				return fmt.Errorf("%w: key %s is a CA key of %s; a %s needs a key of its own", ErrInvalidRequest, key.URI(), other.Name, role.what)
			}
		}
	}
	return ca.notDelegated(pub, key.URI(), "a "+role.what, func(r *delegateRole, name string) bool {
		return r == role && name == a.Name // the key it replaces, or the same one again
	})
}

// notDelegated refuses a key (for what) that some authority's delegated
// key of some role is, but those skip names. CA keys are checked against
// delegated keys too (checkAuthority, checkIssuer): a key has one role,
// whichever came first.
func (ca *CA) notDelegated(pub interface{ Equal(crypto.PublicKey) bool }, uri, what string, skip func(*delegateRole, string) bool) error {
	as, err := ca.state.Authorities()
	if err != nil {
		return err
	}
	for _, other := range as {
		for _, r := range []*delegateRole{roleOCSP, roleSCEP} {
			if skip != nil && skip(r, other.Name) {
				continue
			}
			d, err := ca.state.Delegate(r.name, other.Name)
			if err != nil {
				continue
			}
			for _, dc := range d.Certs {
				if c, err := ca.certs.parse(dc.DER); err == nil && pub.Equal(c.PublicKey) {
					if uri == "" {
						uri = "(no URI: an imported certificate's)"
					}
					return fmt.Errorf("%w: key %s is the %s of %s; %s needs a key of its own", ErrInvalidRequest, uri, r.what, other.Name, what)
				}
			}
		}
	}
	return nil
}

// delegateCert has an issuer certify a delegated key. It returns nil when
// the issuer's remaining life is too short to be worth one (for OCSP, the
// issuer's own key then signs its answers to the end).
func (ca *CA) delegateCert(ctx context.Context, role *delegateRole, a *fsm.Authority, iss *fsm.Issuer, pub crypto.PublicKey, ttl time.Duration, now time.Time) (*fsm.OCSPResponderCert, error) {
	issuer, err := ca.certs.parse(iss.Chain[0])
	if err != nil {
		return nil, err
	}
	notAfter := delegateNotAfter(issuer, ttl, now)
	if notAfter.Sub(now) < role.minLife {
		return nil, nil
	}
	tmpl, err := baseTemplate(pub, ttl, now)
	if err != nil {
		return nil, err
	}
	tmpl.NotAfter = notAfter
	role.shape(a, tmpl)
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

func delegateNotAfter(issuer *x509.Certificate, ttl time.Duration, now time.Time) time.Time {
	if end := now.Add(ttl); end.Before(issuer.NotAfter) {
		return end
	}
	return issuer.NotAfter
}

// RefreshDelegates renews delegated certificates a third of their life
// before they end, certifies the keys for issuers added since, and drops
// certificates of issuers that are gone or expired. The leader calls it
// periodically, and it runs after an issuer is added.
func (ca *CA) RefreshDelegates(ctx context.Context) error {
	as, err := ca.state.Authorities()
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range as {
		errs = append(errs, ca.refreshDelegates(ctx, a))
	}
	return errors.Join(errs...)
}

func (ca *CA) refreshDelegates(ctx context.Context, a *fsm.Authority) error {
	return errors.Join(ca.refreshDelegate(ctx, roleOCSP, a), ca.refreshDelegate(ctx, roleSCEP, a))
}

func (ca *CA) refreshDelegate(ctx context.Context, role *delegateRole, a *fsm.Authority) error {
	r, err := ca.state.Delegate(role.name, a.Name)
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
		due := cur == nil || now.After(cur.NotAfter.Add(-role.renewBefore(r.TTL)))
		// Near the issuer's own end a new certificate would end no later
		// than the current one: no signature for nothing.
		if due && (cur == nil || delegateNotAfter(issuer, r.TTL, now).After(cur.NotAfter.Add(time.Minute))) {
			if key == nil {
				if key, err = ca.signers.Get(ctx, r.KeyURI); err != nil {
					return fmt.Errorf("%s of %s: key %s: %w", role.what, a.Name, r.KeyURI, err)
				}
			}
			c, err := ca.delegateCert(ctx, role, a, iss, key.Public(), r.TTL, now)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s of %s, issuer %s: %w", role.what, a.Name, iss.ID, err))
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
		err := ca.propose(ctx, fsm.CmdOCSPResponderPut, fsm.OCSPResponderPut{Responder: next, ExpectedVersion: r.Version, Role: role.name})
		if errors.Is(err, fsm.ErrVersionMismatch) {
			err = nil // changed meanwhile (an operator, or a previous leader): the next round looks again
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// OCSPResponder returns an authority's delegated OCSP responder.
func (ca *CA) OCSPResponder(name string) (*fsm.OCSPResponder, error) {
	return ca.Delegate(fsm.RoleOCSP, name)
}

// Delegate returns an authority's delegated key of a role.
func (ca *CA) Delegate(roleName, name string) (*fsm.OCSPResponder, error) {
	role, err := roleNamed(roleName)
	if err != nil {
		return nil, err
	}
	if _, err := ca.Authority(name); err != nil {
		return nil, err
	}
	r, err := ca.state.Delegate(role.name, name)
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, fmt.Errorf("%w: authority %s has no %s", ErrNotFound, name, role.what)
	}
	return r, err
}

// DeleteDelegate removes an authority's delegated key of a role, on every
// node once this returns: for the OCSP responder, the issuing keys sign
// OCSP answers again; for the SCEP RA, SCEP answers not found.
func (ca *CA) DeleteDelegate(ctx context.Context, roleName, name string) error {
	role, err := roleNamed(roleName)
	if err != nil {
		return err
	}
	if _, err := ca.Delegate(roleName, name); err != nil {
		return err
	}
	if err := ca.proposeAndRead(ctx, fsm.CmdOCSPResponderDel, fsm.OCSPResponderDelete{Authority: name, Role: role.name}); err != nil {
		return err
	}
	if _, _, err := ca.raft.Propagate(ctx); err != nil {
		ca.log.Warn(role.what+" removal not confirmed by every node", "authority", name, "err", err)
	}
	return nil
}

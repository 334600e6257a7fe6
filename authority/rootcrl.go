package authority

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// Root CRLs. A relying party that checks the whole chain (nginx ssl_crl,
// HAProxy crl-file, openssl -crl_check_all) needs a CRL from the root that
// covers the intermediates. When the root's key is in a KMS or HSM
// (RootKeyURI) the leader signs one as it signs issuers' CRLs: on the
// authority's schedule, and within its CRL interval after an issuer is
// revoked. It lists the revoked issuers whose certificate the root signed.

// RootCRLID is the issuer ID a root's CRL is kept under.
func RootCRLID(root *x509.Certificate) string { return fsm.RootCRLPrefix + IssuerID(root) }

func (ca *CA) refreshRootCRL(ctx context.Context, name, id string, force bool) error {
	ca.crlMu.Lock()
	defer ca.crlMu.Unlock()
	a, err := ca.state.Authority(name)
	if err != nil {
		return err
	}
	root, err := ca.certs.parse(a.Root)
	if err != nil {
		return err
	}
	now := ca.now().UTC().Truncate(time.Second)
	if a.RootKeyURI == "" || RootCRLID(root) != id || !now.Before(root.NotAfter) {
		return nil // an offline root's CRL is signed where its key is
	}
	validity, refresh := CRLTimes(a)
	asOf := ca.state.AppliedIndex() // before the issuers are read, as refreshCRL
	var number uint64 = 1
	if cur, err := ca.state.CRL(name, id); err == nil {
		if !force && now.Before(cur.ThisUpdate.Add(refresh)) && cur.NextUpdate.Sub(cur.ThisUpdate) <= validity {
			return nil
		}
		number = cur.Number + 1
	}
	tmpl := &x509.RevocationList{Number: new(big.Int).SetUint64(number), ThisUpdate: now, NextUpdate: now.Add(validity)}
	for _, iss := range a.Issuers {
		if !iss.Revoked() {
			continue
		}
		top, err := ca.certs.parse(iss.Chain[len(iss.Chain)-1])
		if err != nil || top.CheckSignatureFrom(root) != nil || !now.Before(top.NotAfter) {
			continue // signed by another root, or expired: nothing to list
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: top.SerialNumber, RevocationTime: iss.RevokedAt, ReasonCode: iss.RevocationReason,
		})
	}
	key, err := ca.signers.Get(ctx, a.RootKeyURI)
	if err != nil {
		return fmt.Errorf("%w: root key: %w", ErrUnavailable, err)
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, root, signer.CryptoSigner(ctx, key))
	if err != nil {
		return fmt.Errorf("root crl: sign: %w", err)
	}
	err = ca.propose(ctx, fsm.CmdRootCRLPut, fsm.CRLPut{CRL: fsm.CRL{Authority: name, Issuer: id, Number: number,
		ThisUpdate: tmpl.ThisUpdate, NextUpdate: tmpl.NextUpdate, DER: der}, AsOf: asOf})
	if errors.Is(err, fsm.ErrUpgrading) {
		return nil // a server does not read root CRLs yet: a later round
	}
	return err
}

// RootCRL returns the current CRL of an authority's root (root is its
// IssuerID), never one past its nextUpdate.
func (ca *CA) RootCRL(ctx context.Context, name, root string) (*fsm.CRL, error) {
	if err := ca.CaughtUp(ctx); err != nil {
		return nil, err
	}
	a, err := ca.Authority(name)
	if err != nil {
		return nil, err
	}
	c, err := ca.state.CRL(name, fsm.RootCRLPrefix+root)
	switch {
	case errors.Is(err, fsm.ErrNotFound) && (a.RootKeyURI == "" || RootCRLID(mustParse(a.Root)) != fsm.RootCRLPrefix+root):
		return nil, fmt.Errorf("%w: authority %s publishes no CRL for root %q", ErrNotFound, name, truncate(root))
	case errors.Is(err, fsm.ErrNotFound) || (err == nil && !ca.now().Before(c.NextUpdate)):
		return nil, fmt.Errorf("%w: %w for %s/root %s; it is signed shortly", ErrUnavailable, ErrCRLUnavailable, name, root)
	}
	return c, err
}

// RootCert returns the DER of an authority's root with the given ID.
func (ca *CA) RootCert(name, root string) ([]byte, error) {
	a, err := ca.Authority(name)
	if err != nil {
		return nil, err
	}
	for _, der := range a.Roots() {
		if c, err := ca.certs.parse(der); err == nil && IssuerID(c) == root {
			return der, nil
		}
	}
	return nil, fmt.Errorf("%w: authority %s has no root %q", ErrNotFound, name, truncate(root))
}

// CRLBundle is every current CRL of an authority that a relying party
// checking whole chains needs: the root's (when this cluster signs it) and
// each unexpired issuer's. Unavailable if one of those lacks a current CRL.
func (ca *CA) CRLBundle(ctx context.Context, name string) ([]*fsm.CRL, error) {
	if err := ca.CaughtUp(ctx); err != nil {
		return nil, err
	}
	a, err := ca.Authority(name)
	if err != nil {
		return nil, err
	}
	now := ca.now()
	var ids []string
	if root := mustParse(a.Root); a.RootKeyURI != "" && now.Before(root.NotAfter) {
		ids = append(ids, RootCRLID(root))
	}
	for _, iss := range a.Issuers {
		if c, err := ca.certs.parse(iss.Chain[0]); err == nil && now.Before(c.NotAfter) {
			ids = append(ids, iss.ID)
		}
	}
	var out []*fsm.CRL
	for _, id := range ids {
		c, err := ca.state.CRL(name, id)
		if errors.Is(err, fsm.ErrNotFound) || (err == nil && !now.Before(c.NextUpdate)) {
			return nil, fmt.Errorf("%w: %w for %s/%s; it is signed shortly", ErrUnavailable, ErrCRLUnavailable, name, id)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// RevokeIssuer revokes an issuer's certificate: the issuer signs no new
// certificate, and the root's CRL lists it within the leader's CRL
// interval (when this cluster holds the root's key; an offline root's CRL
// is signed where the root is).
// reasonName is an RFC 5280 name ("" is unspecified).
func (ca *CA) RevokeIssuer(ctx context.Context, name, issuer, reasonName string) (*fsm.Authority, error) {
	if issuer == "" {
		return nil, fmt.Errorf("%w: name the issuer to revoke", ErrInvalidRequest)
	}
	reason, ok := revocationReasons[orDefault(reasonName, "unspecified")]
	if !ok {
		return nil, fmt.Errorf("%w: unknown revocation reason %q", ErrInvalidRequest, truncate(reasonName))
	}
	a, iss, err := ca.issuer(name, issuer)
	if err != nil {
		return nil, err
	}
	in := fsm.IssuerRevoke{Authority: name, Issuer: iss.ID, Reason: reason}
	root, top := mustParse(a.Root), mustParse(iss.Chain[len(iss.Chain)-1])
	if a.RootKeyURI != "" && top.CheckSignatureFrom(root) == nil {
		in.RootCRL = RootCRLID(root)
	}
	if err := ca.proposeAndRead(ctx, fsm.CmdIssuerRevoke, in); err != nil {
		return nil, err
	}
	return ca.state.Authority(name)
}

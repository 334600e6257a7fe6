package authority

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// SCEPRA is what a SCEP endpoint needs of an authority's RA (a delegated
// key, delegate.go): the certificate GetCACert offers, every certificate
// of the key (a client may have fetched another issuer's), the CA
// certificates, and the key, to decrypt requests and sign replies.
type SCEPRA struct {
	Cert    *x509.Certificate // from the newest active issuer
	Certs   []*x509.Certificate
	CACerts [][]byte // that issuer's chain and the roots
	Decrypt crypto.Decrypter
	Sign    crypto.Signer
}

// ErrNoSCEPRA: the authority has no SCEP RA (PUT .../scep-ra makes one).
var ErrNoSCEPRA = errors.New("no SCEP RA")

// SCEP returns an authority's SCEP RA, its key bound to ctx.
func (ca *CA) SCEP(ctx context.Context, name string) (*SCEPRA, error) {
	r, err := ca.state.Delegate(fsm.RoleSCEP, name)
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w for authority %s", ErrNotFound, ErrNoSCEPRA, truncate(name))
	}
	if err != nil {
		return nil, err
	}
	_, iss, err := ca.issuer(name, "")
	if err != nil {
		return nil, err
	}
	out := &SCEPRA{}
	for _, c := range r.Certs {
		rc, err := ca.certs.parse(c.DER)
		if err != nil {
			return nil, err
		}
		out.Certs = append(out.Certs, rc)
		if c.Issuer == iss.ID {
			out.Cert = rc
		}
	}
	if out.Cert == nil {
		return nil, fmt.Errorf("%w: the SCEP RA of %s has no certificate from issuer %s yet; the leader makes one shortly", ErrUnavailable, name, iss.ID)
	}
	if out.CACerts, err = ca.CACerts(ctx, name); err != nil {
		return nil, err
	}
	key, err := ca.signers.Get(ctx, r.KeyURI)
	if err != nil {
		return nil, fmt.Errorf("%w: SCEP RA key: %w", ErrUnavailable, err)
	}
	d, ok := signer.CryptoDecrypter(ctx, key)
	if !ok {
		return nil, fmt.Errorf("%w: the SCEP RA key %s cannot decrypt on this node", ErrUnavailable, r.KeyURI)
	}
	out.Decrypt, out.Sign = d, signer.CryptoSigner(ctx, key)
	return out, nil
}

// CRLOf returns the current CRL that lists c if it is revoked: its
// issuer's, or the shard of it that c's serial falls in.
func (ca *CA) CRLOf(ctx context.Context, c *fsm.Cert) (*fsm.CRL, error) {
	_, iss, err := ca.issuer(c.Authority, c.Issuer)
	if err != nil {
		return nil, err
	}
	shard := -1
	if iss.CRLShards > 1 {
		shard = fsm.CRLShard(c.Serial, iss.CRLShards)
	}
	return ca.CRL(ctx, c.Authority, c.Issuer, shard)
}

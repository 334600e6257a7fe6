package authority

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/quorumca/quorumca/fsm"
)

// IssuerID names an intermediate by its key: the first 8 bytes of the
// SHA-256 of its public key, in hex. Stable, and the same on every node.
func IssuerID(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:8])
}

// checkAuthority verifies an authority before it is stored: a root, and
// issuers that each chain to it and whose key opens and matches.
func (ca *CA) checkAuthority(ctx context.Context, a *fsm.Authority) error {
	if a.Name == "" || len(a.Root) == 0 || len(a.Issuers) == 0 {
		return fmt.Errorf("%w: authority needs a name, a root and an issuer", ErrInvalidRequest)
	}
	if !validDNSName(a.Name) || len(a.Name) > 64 {
		return fmt.Errorf("%w: authority name %q: 1-64 lowercase letters, digits, '-' and '.'", ErrInvalidRequest, truncate(a.Name))
	}
	root, err := x509.ParseCertificate(a.Root)
	if err != nil {
		return fmt.Errorf("%w: root: %v", ErrInvalidRequest, err)
	}
	if err := ca.notDelegatedCert(root, a.RootKeyURI, "a root"); err != nil {
		return err
	}
	if a.RootKeyURI != "" {
		if err := ca.checkKey(ctx, a.RootKeyURI, root); err != nil {
			return err
		}
	}
	for i := range a.Issuers {
		if err := ca.checkIssuer(ctx, root, &a.Issuers[i]); err != nil {
			return err
		}
	}
	return nil
}

// checkIssuer verifies an intermediate against the root, opens its key,
// and sets its ID.
func (ca *CA) checkIssuer(ctx context.Context, root *x509.Certificate, iss *fsm.Issuer) error {
	if len(iss.Chain) == 0 || iss.KeyURI == "" {
		return fmt.Errorf("%w: an issuer needs a certificate and a key", ErrInvalidRequest)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	var cert *x509.Certificate
	for i, der := range iss.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("%w: chain[%d]: %v", ErrInvalidRequest, i, err)
		}
		if i == 0 {
			cert = c
		} else {
			inter.AddCert(c)
		}
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%w: the issuing certificate is not a CA that may sign certificates", ErrInvalidRequest)
	}
	if cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return fmt.Errorf("%w: the issuing certificate may not sign CRLs", ErrInvalidRequest)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: ca.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%w: the issuing certificate does not chain to the root: %v", ErrInvalidRequest, err)
	}
	if err := ca.checkKey(ctx, iss.KeyURI, cert); err != nil {
		return err
	}
	if err := ca.notDelegatedCert(cert, iss.KeyURI, "an issuing CA"); err != nil {
		return err
	}
	iss.ID = IssuerID(cert)
	iss.Active = true
	return nil
}

// checkKey opens a key URI and checks it is the certificate's key.
func (ca *CA) checkKey(ctx context.Context, uri string, cert *x509.Certificate) error {
	key, err := ca.signers.Get(ctx, uri)
	if err != nil {
		return fmt.Errorf("%w: key %s: %v", ErrInvalidRequest, uri, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("%w: key %s is not the key of certificate %q", ErrInvalidRequest, uri, cert.Subject.CommonName)
	}
	return nil
}

// notDelegatedCert refuses a CA certificate whose key is a delegated key
// (an OCSP responder's, a SCEP RA's): the RA's key answers strangers'
// envelopes, and must never also sign certificates.
func (ca *CA) notDelegatedCert(c *x509.Certificate, uri, what string) error {
	pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil // no key Go knows: no delegated key either
	}
	return ca.notDelegated(pub, uri, what, nil)
}

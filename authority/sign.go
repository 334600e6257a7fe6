package authority

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// SignRequest asks for a certificate for a CSR.
type SignRequest struct {
	CSR   []byte
	Token string        // an enrollment token, or a JWT from a jwk provisioner
	TTL   time.Duration // 0: the provisioner's default
	// Audiences are the URLs the client may have addressed this request to
	// (https://<host it used>/v1/sign); a JWT's aud must name one.
	Audiences []string
}

// Sign issues a certificate against a single-use token.
func (ca *CA) Sign(ctx context.Context, req SignRequest) (*Issued, error) {
	if strings.HasPrefix(req.Token, enrollPrefix) || strings.Count(req.Token, ".") != 2 {
		return ca.signWithEnrollmentToken(ctx, req)
	}
	return ca.signWithJWT(ctx, req)
}

func (ca *CA) signWithEnrollmentToken(ctx context.Context, req SignRequest) (*Issued, error) {
	tok, hash, err := ca.enrollmentToken(ctx, req.Token)
	if err != nil {
		return nil, err
	}
	prov, err := ca.provisioner(ctx, tok.Provisioner, fsm.KindEnrollmentToken)
	if err != nil {
		return nil, err
	}
	csr, names, err := parseCSRNames(req.CSR)
	if err != nil {
		return nil, err
	}
	if err := names.allowedBy(tok.SANs); err != nil {
		return nil, err
	}
	return ca.issue(ctx, issuance{
		prov: prov, pub: csr.PublicKey, names: names, ttl: req.TTL,
		requester: "token:" + tok.ID, auth: fsm.Issue{TokenHash: hash},
	})
}

func (ca *CA) signWithJWT(ctx context.Context, req SignRequest) (*Issued, error) {
	claims, prov, err := ca.verifyProvisionerJWT(ctx, req.Token, req.Audiences)
	if err != nil {
		return nil, err
	}
	csr, names, err := parseCSRNames(req.CSR)
	if err != nil {
		return nil, err
	}
	if err := names.allowedBy(claims.names); err != nil {
		return nil, err
	}
	return ca.issue(ctx, issuance{
		prov: prov, pub: csr.PublicKey, names: names, ttl: req.TTL,
		requester: "jwk:" + prov.Name + ":" + claims.Subject, auth: fsm.Issue{OneTime: claims.oneTime},
	})
}

func parseCSRNames(b []byte) (*x509.CertificateRequest, *certNames, error) {
	csr, err := ParseCSR(b)
	if err != nil {
		return nil, nil, err
	}
	names, err := csrNames(csr)
	if err != nil {
		return nil, nil, err
	}
	return csr, names, nil
}

// checkAuthority verifies an authority before it is stored: the chain links
// to the root, the key opens, and it is the issuing certificate's key.
func (ca *CA) checkAuthority(ctx context.Context, a *fsm.Authority) error {
	if a.Name == "" || len(a.Chain) == 0 || len(a.Root) == 0 || a.KeyURI == "" {
		return fmt.Errorf("%w: authority needs a name, root, chain and key", ErrInvalidRequest)
	}
	root, err := x509.ParseCertificate(a.Root)
	if err != nil {
		return fmt.Errorf("%w: root: %v", ErrInvalidRequest, err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	var issuer *x509.Certificate
	for i, der := range a.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("%w: chain[%d]: %v", ErrInvalidRequest, i, err)
		}
		if i == 0 {
			issuer = c
		} else {
			inter.AddCert(c)
		}
	}
	if !issuer.IsCA {
		return fmt.Errorf("%w: issuing certificate is not a CA", ErrInvalidRequest)
	}
	if _, err := issuer.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: ca.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%w: chain does not verify to the root: %v", ErrInvalidRequest, err)
	}
	key, err := ca.signers.Get(ctx, a.KeyURI)
	if err != nil {
		return fmt.Errorf("%w: key %s: %v", ErrInvalidRequest, a.KeyURI, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(issuer.PublicKey) {
		return fmt.Errorf("%w: key %s is not the issuing certificate's key", ErrInvalidRequest, a.KeyURI)
	}
	return nil
}

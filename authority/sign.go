package authority

import (
	"context"
	"crypto/x509"
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
	ctx = asActor(ctx, "provisioner:"+prov.Name+" token:"+tok.ID)
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
	ctx = asActor(ctx, "provisioner:"+prov.Name+" jwt:"+claims.Subject)
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

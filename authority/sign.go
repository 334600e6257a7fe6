package authority

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// SignRequest asks for a certificate for a CSR.
type SignRequest struct {
	CSR   []byte
	Token string        // an enrollment token, or a JWT from a jwk provisioner
	TTL   time.Duration // 0: the provisioner's default
	// Audiences are the URLs of this endpoint a JWT's aud may name: the
	// configured public URLs + /v1/sign, never taken from the request.
	Audiences []string
	// EST (HTTP Basic): the token's ID, which must be the token's, and,
	// for a provisioner's own EST path, the provisioner it must be for.
	// Either set: an enrollment token only.
	TokenID, Provisioner string
}

// Sign issues a certificate against a single-use token.
func (ca *CA) Sign(ctx context.Context, req SignRequest) (*Issued, error) {
	if req.TokenID != "" || req.Provisioner != "" || strings.HasPrefix(req.Token, enrollPrefix) || strings.Count(req.Token, ".") != 2 {
		return ca.signWithEnrollmentToken(ctx, req)
	}
	return ca.signWithJWT(ctx, req)
}

func (ca *CA) signWithEnrollmentToken(ctx context.Context, req SignRequest) (*Issued, error) {
	tok, hash, err := ca.enrollmentToken(ctx, req.Token)
	if errors.Is(err, fsm.ErrTokenUsed) {
		return ca.replayEnrollment(ctx, req, err)
	}
	if err != nil {
		return nil, err
	}
	if err := tokenFor(tok, req); err != nil {
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
	iss, err := ca.issue(ctx, issuance{
		prov: prov, pub: csr.PublicKey, names: names, ttl: req.TTL,
		requester: "token:" + tok.ID, auth: fsm.Issue{TokenHash: hash},
	})
	if errors.Is(err, fsm.ErrTokenUsed) {
		// Used a moment ago, perhaps by this very request sent twice.
		return ca.replayEnrollment(ctx, req, err)
	}
	return iss, err
}

// replayEnrollment answers a used token with the certificate it was used
// for, when the request is for that certificate's key: a device whose
// answer was lost on the way (a timeout, a dropped connection) asks again
// and gets what it already has, instead of being locked out. The CSR's
// signature proves the key; whoever lacks it still gets usedErr.
func (ca *CA) replayEnrollment(ctx context.Context, req SignRequest, usedErr error) (*Issued, error) {
	hash, ok := parseSecret(enrollPrefix, req.Token)
	if !ok {
		return nil, usedErr
	}
	tok, err := ca.state.TokenByHash(hash)
	if err == nil && tok.UsedBy == "" {
		// The leader refused it as used; this node has not applied that
		// use yet.
		if ca.raft.Barrier(ctx) != nil {
			return nil, usedErr
		}
		tok, err = ca.state.TokenByHash(hash)
	}
	if err != nil || tok.UsedBy == "" || tokenFor(tok, req) != nil {
		return nil, usedErr
	}
	csr, err := ParseCSR(req.CSR)
	if err != nil {
		return nil, usedErr
	}
	if iss := ca.standingFor(tok.UsedBy, csr.PublicKey); iss != nil {
		return iss, nil
	}
	return nil, usedErr
}

// standingFor answers a retried first enrollment: the certificate with
// serial, if it is for pub and not revoked, with its chain; nil otherwise.
func (ca *CA) standingFor(serial string, pub crypto.PublicKey) *Issued {
	rec, err := ca.state.Cert(serial)
	if err != nil || rec.Revoked() {
		return nil
	}
	leaf, err := x509.ParseCertificate(rec.DER)
	if err != nil || !SamePublicKey(leaf.PublicKey, pub) {
		return nil
	}
	return &Issued{Cert: *rec, Chain: ca.Chain(rec)}
}

// tokenFor checks what an EST client said of its token: its ID (the
// Basic user name) and the provisioner whose path it was sent to.
func tokenFor(tok *fsm.Token, req SignRequest) error {
	if req.TokenID != "" && subtle.ConstantTimeCompare([]byte(req.TokenID), []byte(tok.ID)) != 1 {
		return fmt.Errorf("%w: the user name is not the token's ID", fsm.ErrTokenInvalid)
	}
	if req.Provisioner != "" && req.Provisioner != tok.Provisioner {
		return fmt.Errorf("%w: the token is for provisioner %s, not %s", ErrForbidden, tok.Provisioner, truncate(req.Provisioner))
	}
	return nil
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

// SignServerKey is Sign for EST's serverkeygen (RFC 7030 section 4.4): the
// CA makes the key, of the first type the provisioner's policy allows, for
// the names of the client's CSR (whose own key only signs it), and returns
// it with the certificate. The key is never stored: an answer that is lost
// costs the token. Only an enrollment token whose provisioner allows
// server_keygen will do, checked before a key is made.
func (ca *CA) SignServerKey(ctx context.Context, req SignRequest) (*Issued, crypto.Signer, error) {
	tok, _, err := ca.enrollmentToken(ctx, req.Token)
	if err != nil {
		return nil, nil, err
	}
	if err := tokenFor(tok, req); err != nil {
		return nil, nil, err
	}
	prov, err := ca.provisioner(ctx, tok.Provisioner, fsm.KindEnrollmentToken)
	if err != nil {
		return nil, nil, err
	}
	if !prov.Policy.ServerKeygen {
		return nil, nil, fmt.Errorf("%w: provisioner %s does not have the CA make keys (policy server_keygen)", ErrForbidden, prov.Name)
	}
	client, err := ParseCSR(req.CSR)
	if err != nil {
		return nil, nil, err
	}
	key, err := serverKey(&prov.Policy)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: client.Subject,
		DNSNames: client.DNSNames, IPAddresses: client.IPAddresses, URIs: client.URIs, EmailAddresses: client.EmailAddresses}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	req.CSR = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	iss, err := ca.signWithEnrollmentToken(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	return iss, key, nil
}

// serverKey makes a key of the first type a policy allows, in this order:
// P-256, P-384, Ed25519, RSA (2048 bits or the policy's minimum), P-521.
func serverKey(p *fsm.Policy) (crypto.Signer, error) {
	allowed := AllowedKeyTypes(p)
	for _, t := range []string{KeyP256, KeyP384, KeyEd25519, KeyRSA, KeyP521} {
		if !slices.Contains(allowed, t) {
			continue
		}
		switch t {
		case KeyP256:
			return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		case KeyP384:
			return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		case KeyP521:
			return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		case KeyEd25519:
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		case KeyRSA:
			return rsa.GenerateKey(rand.Reader, max(p.RSAMinBits, minRSABits))
		}
	}
	return nil, fmt.Errorf("%w: the policy allows no key type the CA can make", ErrInvalidRequest)
}

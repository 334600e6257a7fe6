package authority

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// Self-minted one-time tokens: JWTs a jwk provisioner's key holder signs to
// enroll, and JWS renewal tokens a device signs with its current key. Both
// are short-lived, name the URL they are for, and carry a jti that the
// cluster remembers until the token expires, so a replay to any node fails.

const (
	maxTokenLife = 5 * time.Minute
	clockLeeway  = 30 * time.Second
	maxJWTLen    = 16 << 10
)

var jwtAlgorithms = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
}

// jwtAlgorithm reports whether a public key can verify one of the accepted
// algorithms.
func jwtAlgorithm(key any) (string, bool) {
	switch key.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA", true
	case ed25519.PublicKey:
		return "EdDSA", true
	case *rsa.PublicKey:
		return "RSA", true
	}
	return "", false
}

type oneTimeClaims struct {
	jwt.Claims
	SANs []string `json:"sans,omitempty"`
}

// verifiedToken is what a valid one-time token says.
type verifiedToken struct {
	jwt.Claims
	names   []string
	oneTime *fsm.OneTime
}

func invalidToken(format string, args ...any) *errs.Error {
	return refuse(fsm.ErrTokenInvalid, format, args...)
}

// checkOneTimeClaims applies the rules every one-time token follows.
func (ca *CA) checkOneTimeClaims(c *oneTimeClaims, issuer string, audiences []string, scope string) (*verifiedToken, error) {
	now := ca.now()
	err := c.ValidateWithLeeway(jwt.Expected{Issuer: issuer, AnyAudience: audiences, Time: now}, clockLeeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return nil, refuse(fsm.ErrTokenExpired, "token has expired")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, invalidToken("token audience must be one of %v", audiences)
	case err != nil:
		return nil, invalidToken("token claims: %v", err)
	}
	if c.Expiry == nil || c.ID == "" || len(c.ID) > 128 {
		return nil, invalidToken("token needs exp and a jti of at most 128 characters")
	}
	exp := c.Expiry.Time()
	if exp.After(now.Add(maxTokenLife + clockLeeway)) {
		return nil, invalidToken("token must expire within %s", maxTokenLife)
	}
	key := sha256.Sum256([]byte(scope + "\x00" + c.ID))
	return &verifiedToken{Claims: c.Claims, oneTime: &fsm.OneTime{Key: key[:], Expires: exp.UTC()}}, nil
}

// verifyProvisionerJWT checks a JWT minted with a jwk provisioner's key:
// iss names the provisioner, aud the sign URL, sans (or sub) the names.
func (ca *CA) verifyProvisionerJWT(ctx context.Context, raw string, audiences []string) (*verifiedToken, *fsm.Provisioner, error) {
	if len(raw) > maxJWTLen {
		return nil, nil, invalidToken("token too long")
	}
	tok, err := jwt.ParseSigned(raw, jwtAlgorithms)
	if err != nil {
		return nil, nil, invalidToken("token is not a signed JWT: %v", err)
	}
	var unverified oneTimeClaims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil || unverified.Issuer == "" {
		return nil, nil, invalidToken("token has no issuer")
	}
	prov, err := ca.provisioner(ctx, unverified.Issuer, fsm.KindJWK)
	if err != nil {
		return nil, nil, err
	}
	key, err := parsePublicJWK(prov.JWK)
	if err != nil {
		return nil, nil, err
	}
	var c oneTimeClaims
	if err := tok.Claims(key.Key, &c); err != nil {
		return nil, nil, invalidToken("token signature does not verify with provisioner %s", prov.Name)
	}
	v, err := ca.checkOneTimeClaims(&c, prov.Name, audiences, "jwk\x00"+prov.Name)
	if err != nil {
		return nil, nil, err
	}
	list := c.SANs
	if len(list) == 0 && c.Subject != "" {
		list = []string{c.Subject}
	}
	if v.names, err = normalizeNames(list); err != nil {
		return nil, nil, invalidToken("token names: %v", err)
	}
	if ca.state.OneTimeUsed(v.oneTime.Key) {
		return nil, nil, fsm.ErrTokenUsed
	}
	return v, prov, nil
}

// verifyRenewalJWS checks a renewal token: a JWT signed with the key of the
// certificate carried in its x5c header. It returns that certificate.
func (ca *CA) verifyRenewalJWS(raw string, audiences []string) (*verifiedToken, *x509.Certificate, error) {
	if len(raw) > maxJWTLen {
		return nil, nil, invalidToken("token too long")
	}
	leaf, err := x5cLeaf(raw)
	if err != nil {
		return nil, nil, err
	}
	tok, err := jwt.ParseSigned(raw, jwtAlgorithms)
	if err != nil {
		return nil, nil, invalidToken("token is not a signed JWT: %v", err)
	}
	var c oneTimeClaims
	if err := tok.Claims(leaf.PublicKey, &c); err != nil {
		return nil, nil, invalidToken("token signature does not verify with the certificate in x5c")
	}
	serial := SerialHex(leaf.SerialNumber)
	v, err := ca.checkOneTimeClaims(&c, "", audiences, "renew\x00"+serial)
	if err != nil {
		return nil, nil, err
	}
	if ca.state.OneTimeUsed(v.oneTime.Key) {
		return nil, nil, fsm.ErrTokenUsed
	}
	return v, leaf, nil
}

// x5cLeaf reads the first certificate of a compact JWS's x5c header.
func x5cLeaf(raw string) (*x509.Certificate, error) {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return nil, invalidToken("token is not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return nil, invalidToken("token header is not base64url")
	}
	var h struct {
		X5C []string `json:"x5c"`
	}
	if err := json.Unmarshal(b, &h); err != nil || len(h.X5C) == 0 {
		return nil, invalidToken("renewal token needs an x5c header with the current certificate")
	}
	der, err := base64.StdEncoding.DecodeString(h.X5C[0])
	if err != nil {
		return nil, invalidToken("x5c is not base64")
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, invalidToken("x5c: %v", err)
	}
	return leaf, nil
}

// SignJWT makes a one-time token; the client package and tests use it.
func SignJWT(key crypto.Signer, kid string, x5c [][]byte, claims any) (string, error) {
	alg, err := signingAlgorithm(key.Public())
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	if len(x5c) > 0 {
		certs := make([]string, len(x5c))
		for i, d := range x5c {
			certs[i] = base64.StdEncoding.EncodeToString(d)
		}
		opts = opts.WithHeader(jose.HeaderKey("x5c"), certs)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return "", err
	}
	return jwt.Signed(sig).Claims(claims).Serialize()
}

func signingAlgorithm(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return jose.ES256, nil
		case 384:
			return jose.ES384, nil
		case 521:
			return jose.ES512, nil
		}
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	case *rsa.PublicKey:
		return jose.RS256, nil
	}
	return "", fmt.Errorf("no JWS algorithm for %T", pub)
}

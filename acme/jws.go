package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// Every ACME POST is a JWS in the flattened JSON serialization (RFC 8555
// section 6.2): one signature, everything in the protected header, which
// names the request's URL and a nonce, and either the key itself (jwk:
// newAccount, revokeCert by the certificate's key) or the account's URL
// (kid: everything else).

// signatureAlgs are the account key algorithms accepted: ES256 and EdDSA,
// which RFC 8555 asks for, RS256 (certbot's default), and the larger
// curves. Never "none" or a MAC.
var signatureAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.EdDSA, jose.RS256}

// maxJWS bounds a request body: a CSR with many names fits with room.
const maxJWS = 64 << 10

// signed is a verified request.
type signed struct {
	payload []byte
	jwk     *jose.JSONWebKey // the key that signed, for a jwk request
	account *fsm.ACMEAccount // the account that signed, for a kid request
}

// keyMode says which of jwk and kid a request must carry.
type keyMode int

const (
	byKID keyMode = iota
	byJWK
	byEither
)

// parseJWS reads a request's JWS and checks its shape.
func parseJWS(body []byte) (*jose.JSONWebSignature, *jose.Header, string, error) {
	if len(body) > maxJWS {
		return nil, nil, "", problem(errs.TooLarge, ProbMalformed, "the request is larger than %d bytes", maxJWS)
	}
	jws, err := jose.ParseSignedJSON(string(body), signatureAlgs)
	if err != nil {
		if strings.Contains(err.Error(), "unexpected signature algorithm") {
			return nil, nil, "", problem(errs.Invalid, ProbBadSignatureAlgorithm, "the JWS algorithm is not one of ES256, ES384, ES512, EdDSA, RS256")
		}
		return nil, nil, "", malformed("the request is not a JWS in the flattened JSON serialization: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, nil, "", malformed("the JWS must carry exactly one signature")
	}
	sig := jws.Signatures[0]
	if u := sig.Unprotected; u.KeyID != "" || u.JSONWebKey != nil || u.Nonce != "" || u.Algorithm != "" || len(u.ExtraHeaders) > 0 {
		return nil, nil, "", malformed("the JWS has an unprotected header; everything goes in the protected one")
	}
	h := sig.Protected
	if _, ok := h.ExtraHeaders["crit"]; ok {
		// Extensions such as RFC 7797's unencoded payloads: ACME has none.
		return nil, nil, "", malformed("the JWS names critical extensions; ACME uses none")
	}
	if _, ok := h.ExtraHeaders["b64"]; ok {
		return nil, nil, "", malformed("the JWS payload must be base64url encoded")
	}
	url, _ := h.ExtraHeaders["url"].(string)
	if url == "" {
		return nil, nil, "", malformed("the JWS protected header has no url")
	}
	return jws, &h, url, nil
}

// verify checks a request against the URL it was sent to: its shape,
// signature, account and nonce. The nonce is redeemed last, once the
// request is known to be genuine.
func (s *Service) verify(ctx context.Context, c *Call, mode keyMode) (*signed, error) {
	jws, h, url, err := parseJWS(c.Body)
	if err != nil {
		return nil, err
	}
	if url != c.URL {
		return nil, unauthorized("the JWS url %q is not the URL the request was sent to", truncate(url))
	}
	if h.Nonce == "" {
		return nil, problem(errs.Invalid, ProbBadNonce, "the JWS protected header has no nonce")
	}
	if (h.JSONWebKey != nil) == (h.KeyID != "") {
		return nil, malformed("the JWS protected header must carry jwk or kid, and not both")
	}
	// Everything the request reads is at least as new as what was
	// committed when it arrived, through whichever node.
	if err := s.sync(ctx); err != nil {
		return nil, err
	}
	out := &signed{}
	var key *jose.JSONWebKey
	switch {
	case h.JSONWebKey != nil:
		if mode == byKID {
			return nil, malformed("this request is signed by an account: use kid, not jwk")
		}
		if err := checkAccountKey(h.JSONWebKey); err != nil {
			return nil, err
		}
		out.jwk, key = h.JSONWebKey, h.JSONWebKey
	default:
		if mode == byJWK {
			return nil, malformed("this request is signed with its key: use jwk, not kid")
		}
		acc, err := s.accountOf(ctx, c, h.KeyID)
		if err != nil {
			return nil, err
		}
		k, err := accountKey(acc)
		if err != nil {
			return nil, err
		}
		out.account, key = acc, k
	}
	if !algMatchesKey(h.Algorithm, key) {
		return nil, problem(errs.Invalid, ProbBadSignatureAlgorithm, "algorithm %s does not suit the key", h.Algorithm)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, malformed("the JWS signature does not verify")
	}
	if err := s.nonces.Redeem(ctx, h.Nonce); err != nil {
		return nil, err
	}
	out.payload = payload
	return out, nil
}

// accountOf finds the account a kid names, which must be this
// provisioner's and valid.
func (s *Service) accountOf(ctx context.Context, c *Call, kid string) (*fsm.ACMEAccount, error) {
	id, ok := strings.CutPrefix(kid, c.Base+"/account/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return nil, problem(errs.Invalid, ProbAccountDoesNotExist, "kid %q is not an account of this directory", truncate(kid))
	}
	acc, err := s.state.ACMEAccount(id)
	if errors.Is(err, fsm.ErrNotFound) || (err == nil && acc.Provisioner != c.Provisioner.Name) {
		return nil, problem(errs.Invalid, ProbAccountDoesNotExist, "no account %s", truncate(id))
	}
	if err != nil {
		return nil, err
	}
	if acc.Status != fsm.ACMEValid {
		return nil, unauthorized("account %s is %s", acc.ID, acc.Status)
	}
	return acc, nil
}

func accountKey(acc *fsm.ACMEAccount) (*jose.JSONWebKey, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(acc.JWK); err != nil {
		return nil, err
	}
	return &k, nil
}

// thumbprint is a key's RFC 7638 thumbprint, base64url.
func thumbprint(k *jose.JSONWebKey) (string, error) {
	t, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", problem(errs.Invalid, ProbBadPublicKey, "the key has no thumbprint: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(t), nil
}

// minRSABits: account keys as strong as the certificates' (a CSR's RSA
// key must have 2048 bits too).
const minRSABits = 2048

// checkAccountKey refuses a key that is not public, or too weak.
func checkAccountKey(k *jose.JSONWebKey) error {
	if !k.Valid() || !k.IsPublic() {
		return problem(errs.Invalid, ProbBadPublicKey, "the jwk is not a public key")
	}
	if r, ok := k.Key.(*rsa.PublicKey); ok && (r.N.BitLen() < minRSABits || r.N.BitLen() > 8192) {
		return problem(errs.Invalid, ProbBadPublicKey, "an RSA account key has 2048 to 8192 bits, not %d", r.N.BitLen())
	}
	return nil
}

// algMatchesKey refuses an algorithm made for another type of key than
// the key's (go-jose would too; this keeps the error ACME's).
func algMatchesKey(alg string, k *jose.JSONWebKey) bool {
	switch pk := k.Key.(type) {
	case *rsa.PublicKey:
		return alg == string(jose.RS256)
	case *ecdsa.PublicKey:
		want := map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[pk.Curve.Params().Name]
		return alg == want
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	}
	return false
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync"

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
var signatureAlgs = map[string]bool{"ES256": true, "ES384": true, "ES512": true, "EdDSA": true, "RS256": true}

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

// jwsMsg is a parsed flattened JWS whose signature is not yet checked.
// It is parsed here rather than by go-jose: ACME allows one shape only,
// and every request pays for the parse (go-jose's general parser was a
// fifth of an order's verification).
type jwsMsg struct {
	Alg, Nonce, URL, KID string
	JWK                  *jose.JSONWebKey
	input                []byte // the signing input: protected "." payload
	sig, payload         []byte
}

// jwsHeader is the protected header. crit (RFC 7515 extensions, such as
// RFC 7797's unencoded payloads) and b64 are decoded only to be refused.
type jwsHeader struct {
	Alg   string          `json:"alg"`
	Nonce string          `json:"nonce"`
	URL   string          `json:"url"`
	KID   string          `json:"kid"`
	JWK   json.RawMessage `json:"jwk"`
	Crit  json.RawMessage `json:"crit"`
	B64   json.RawMessage `json:"b64"`
}

// parseJWS reads a request's JWS and checks its shape.
func parseJWS(body []byte) (*jwsMsg, error) {
	if len(body) > maxJWS {
		return nil, problem(errs.TooLarge, ProbMalformed, "the request is larger than %d bytes", maxJWS)
	}
	var flat struct {
		Protected string          `json:"protected"`
		Payload   string          `json:"payload"`
		Signature string          `json:"signature"`
		Header    json.RawMessage `json:"header"`
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields() // "signatures" (the general serialization) among others
	if err := d.Decode(&flat); err != nil || d.More() {
		return nil, malformed("the request is not a JWS in the flattened JSON serialization")
	}
	if len(flat.Header) > 0 {
		return nil, malformed("the JWS has an unprotected header; everything goes in the protected one")
	}
	rawHeader, err1 := base64.RawURLEncoding.DecodeString(flat.Protected)
	payload, err2 := base64.RawURLEncoding.DecodeString(flat.Payload)
	sig, err3 := base64.RawURLEncoding.DecodeString(flat.Signature)
	if err1 != nil || err2 != nil || err3 != nil || len(rawHeader) == 0 || len(sig) == 0 {
		return nil, malformed("the JWS parts are not base64url")
	}
	var h jwsHeader
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return nil, malformed("the JWS protected header is not a JSON object")
	}
	if h.Crit != nil {
		return nil, malformed("the JWS names critical extensions; ACME uses none")
	}
	if h.B64 != nil {
		return nil, malformed("the JWS payload must be base64url encoded")
	}
	if !signatureAlgs[h.Alg] {
		return nil, problem(errs.Invalid, ProbBadSignatureAlgorithm, "the JWS algorithm is not one of ES256, ES384, ES512, EdDSA, RS256")
	}
	if h.URL == "" {
		return nil, malformed("the JWS protected header has no url")
	}
	m := &jwsMsg{Alg: h.Alg, Nonce: h.Nonce, URL: h.URL, KID: h.KID, sig: sig, payload: payload,
		input: []byte(flat.Protected + "." + flat.Payload)}
	if h.JWK != nil {
		m.JWK = new(jose.JSONWebKey)
		if err := m.JWK.UnmarshalJSON(h.JWK); err != nil {
			return nil, problem(errs.Invalid, ProbBadPublicKey, "the jwk is not a JSON Web Key")
		}
	}
	return m, nil
}

// verifySig checks the signature with key, whose type algMatchesKey has
// matched with the algorithm, and returns the payload.
func (m *jwsMsg) verifySig(key crypto.PublicKey) ([]byte, error) {
	ok := false
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(m.sig) == 2*size {
			r, s := new(big.Int).SetBytes(m.sig[:size]), new(big.Int).SetBytes(m.sig[size:])
			ok = ecdsa.Verify(k, hashFor(m.Alg, m.input), r, s)
		}
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, hashFor(m.Alg, m.input), m.sig) == nil
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, m.input, m.sig)
	}
	if !ok {
		return nil, errors.New("acme: the JWS signature does not verify")
	}
	return m.payload, nil
}

// hashFor is the digest an ECDSA or RSA algorithm signs.
func hashFor(alg string, b []byte) []byte {
	switch alg {
	case "ES384":
		h := sha512.Sum384(b)
		return h[:]
	case "ES512":
		h := sha512.Sum512(b)
		return h[:]
	}
	h := sha256.Sum256(b)
	return h[:]
}

// verify checks a request against the URL it was sent to: its shape,
// signature, account and nonce. The nonce is redeemed last, once the
// request is known to be genuine.
func (s *Service) verify(ctx context.Context, c *Call, mode keyMode) (*signed, error) {
	h, err := parseJWS(c.Body)
	if err != nil {
		return nil, err
	}
	if h.URL != c.URL {
		return nil, unauthorized("the JWS url %q is not the URL the request was sent to", truncate(h.URL))
	}
	if h.Nonce == "" {
		return nil, problem(errs.Invalid, ProbBadNonce, "the JWS protected header has no nonce")
	}
	if (h.JWK != nil) == (h.KID != "") {
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
	case h.JWK != nil:
		if mode == byKID {
			return nil, malformed("this request is signed by an account: use kid, not jwk")
		}
		if err := checkAccountKey(h.JWK); err != nil {
			return nil, err
		}
		out.jwk, key = h.JWK, h.JWK
	default:
		if mode == byJWK {
			return nil, malformed("this request is signed with its key: use jwk, not kid")
		}
		acc, err := s.accountOf(ctx, c, h.KID)
		if err != nil {
			return nil, err
		}
		k, err := s.keys.of(acc.JWK)
		if err != nil {
			return nil, err
		}
		out.account, key = acc, k
	}
	if !algMatchesKey(h.Alg, key) {
		return nil, problem(errs.Invalid, ProbBadSignatureAlgorithm, "algorithm %s does not suit the key", h.Alg)
	}
	payload, err := h.verifySig(key.Key)
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

// keyCache keeps account keys parsed, by their JWK: every request of an
// account would parse the same key again. A JWK's bytes name one key for
// ever, so an entry is never stale; the cache is emptied when full.
type keyCache struct {
	mu sync.Mutex
	m  map[string]*jose.JSONWebKey
}

const keyCacheSize = 8192

func (c *keyCache) of(jwk []byte) (*jose.JSONWebKey, error) {
	c.mu.Lock()
	k, ok := c.m[string(jwk)]
	c.mu.Unlock()
	if ok {
		return k, nil
	}
	k = new(jose.JSONWebKey)
	if err := k.UnmarshalJSON(jwk); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= keyCacheSize {
		c.m = make(map[string]*jose.JSONWebKey)
	}
	c.m[string(jwk)] = k
	c.mu.Unlock()
	return k, nil
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

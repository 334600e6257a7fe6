package acme

import (
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
	"fmt"
	"math/big"
	"slices"
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

// headerParams are the protected header parameters ACME reads or refuses.
var headerParams = []string{"alg", "nonce", "url", "kid", "jwk", "crit", "b64"}

// parseJWS reads a request's JWS and checks its shape. Both JSON objects
// are read strictly (exact member names, each once, nothing after the
// object): a parser that folds case or keeps the last of two members, as
// encoding/json does, would act on other members than a proxy or a log
// that reads the first.
func parseJWS(body []byte) (*jwsMsg, error) {
	if len(body) > maxJWS {
		return nil, problem(errs.TooLarge, ProbMalformed, "the request is larger than %d bytes", maxJWS)
	}
	// Any other member ("signatures": the general serialization) is refused.
	flat, err := strictObject(body, "protected", "payload", "signature", "header")
	if err != nil {
		return nil, malformed("the request is not a JWS in the flattened JSON serialization: %v", err)
	}
	if _, ok := flat["header"]; ok {
		return nil, malformed("the JWS has an unprotected header; everything goes in the protected one")
	}
	protected, ok1 := jsonString(flat["protected"])
	payload64, ok2 := jsonString(flat["payload"])
	sig64, ok3 := jsonString(flat["signature"])
	if !ok1 || !ok2 || !ok3 {
		return nil, malformed("the JWS needs protected, payload and signature, each a string (a POST-as-GET's payload is \"\")")
	}
	rawHeader, err1 := base64.RawURLEncoding.DecodeString(protected)
	payload, err2 := base64.RawURLEncoding.DecodeString(payload64)
	sig, err3 := base64.RawURLEncoding.DecodeString(sig64)
	if err1 != nil || err2 != nil || err3 != nil || len(rawHeader) == 0 || len(sig) == 0 {
		return nil, malformed("the JWS parts are not base64url")
	}
	// Header parameters ACME does not use are ignored, as RFC 7515 says;
	// crit (extensions such as RFC 7797's unencoded payloads) and b64 are
	// refused.
	h, err := strictObject(rawHeader, "")
	if err != nil {
		return nil, malformed("the JWS protected header is not a JSON object: %v", err)
	}
	for name := range h {
		for _, known := range headerParams {
			// Ignoring "KID" as RFC 7515 would, while a case-blind reader
			// takes it for kid, is the ambiguity strict reading removes.
			if name != known && strings.EqualFold(name, known) {
				return nil, malformed("the JWS header parameter %.40q is %s in another case", name, known)
			}
		}
	}
	if _, ok := h["crit"]; ok {
		return nil, malformed("the JWS names critical extensions; ACME uses none")
	}
	if _, ok := h["b64"]; ok {
		return nil, malformed("the JWS payload must be base64url encoded")
	}
	m := &jwsMsg{sig: sig, payload: payload, input: []byte(protected + "." + payload64)}
	for name, dst := range map[string]*string{"alg": &m.Alg, "nonce": &m.Nonce, "url": &m.URL, "kid": &m.KID} {
		if raw, ok := h[name]; ok {
			if *dst, ok = jsonString(raw); !ok {
				return nil, malformed("the JWS header parameter %s is not a string", name)
			}
		}
	}
	if !signatureAlgs[m.Alg] {
		return nil, problem(errs.Invalid, ProbBadSignatureAlgorithm, "the JWS algorithm is not one of ES256, ES384, ES512, EdDSA, RS256")
	}
	if m.URL == "" {
		return nil, malformed("the JWS protected header has no url")
	}
	if raw, ok := h["jwk"]; ok {
		m.JWK = new(jose.JSONWebKey)
		if err := m.JWK.UnmarshalJSON(raw); err != nil {
			return nil, problem(errs.Invalid, ProbBadPublicKey, "the jwk is not a JSON Web Key")
		}
	}
	return m, nil
}

// strictObject reads data as one JSON object: member names exactly as
// written (no escapes), each at most once, and nothing after the object.
// With names given, any other member is refused; with "" alone, any is
// kept. encoding/json reads the values; memberNames counts the members,
// which its map would merge.
func strictObject(data []byte, names ...string) (map[string]json.RawMessage, error) {
	var out map[string]json.RawMessage
	if err := json.Unmarshal(data, &out); err != nil || out == nil {
		return nil, errors.New("not an object")
	}
	n, err := memberNames(data)
	if err != nil {
		return nil, err
	}
	if n != len(out) {
		return nil, errors.New("a member named twice")
	}
	if names[0] != "" {
		for name := range out {
			if !slices.Contains(names, name) {
				return nil, fmt.Errorf("unknown member %.40q", name)
			}
		}
	}
	return out, nil
}

// memberNames counts the members of a JSON object that encoding/json has
// accepted (so every string closes), and refuses names written with
// escapes, which would be other names to a reader that does not unescape.
func memberNames(data []byte) (int, error) {
	n, depth, name := 0, 0, false
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			esc := false
			for i++; data[i] != '"'; i++ {
				if data[i] == '\\' {
					esc, i = true, i+1
				}
			}
			if name {
				if esc {
					return 0, errors.New("a member name with escapes")
				}
				n, name = n+1, false
			}
		case '{', '[':
			depth++
			name = depth == 1 // the object's own brace: a name follows
		case '}', ']':
			depth--
		case ',':
			name = depth == 1
		}
	}
	return n, nil
}

// jsonString is raw as a JSON string; null, numbers and the rest are not.
func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// verifySig reports whether the signature verifies with key, whose type
// algMatchesKey has matched with the algorithm.
func (m *jwsMsg) verifySig(key crypto.PublicKey) bool {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(m.sig) != 2*size {
			return false
		}
		r, s := new(big.Int).SetBytes(m.sig[:size]), new(big.Int).SetBytes(m.sig[size:])
		return ecdsa.Verify(k, hashFor(m.Alg, m.input), r, s)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, hashFor(m.Alg, m.input), m.sig) == nil
	case ed25519.PublicKey:
		return ed25519.Verify(k, m.input, m.sig)
	}
	return false
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
	if !h.verifySig(key.Key) {
		return nil, malformed("the JWS signature does not verify")
	}
	if err := s.nonces.Redeem(ctx, h.Nonce); err != nil {
		return nil, err
	}
	out.payload = h.payload
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

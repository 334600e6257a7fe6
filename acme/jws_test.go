package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// signJWS signs payload with go-jose, an implementation independent of
// parseJWS, and returns the flattened serialization.
func signJWS(t *testing.T, alg jose.SignatureAlgorithm, key any, payload []byte, embed bool) []byte {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("url", "https://ca/acme/p/new-order").WithHeader(jose.HeaderKey("nonce"), "n")
	if embed {
		opts.EmbedJWK = true
	} else {
		opts = opts.WithHeader("kid", "https://ca/acme/p/account/a")
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	j, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(must(j.CompactSerialize()), ".")
	b, _ := json.Marshal(map[string]string{"protected": parts[0], "payload": parts[1], "signature": parts[2]})
	return b
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Every accepted algorithm verifies what go-jose signs, and nothing else:
// not another key's signature, not a changed payload or header.
func TestJWSVerifiesEachAlgorithm(t *testing.T) {
	ec := func(c elliptic.Curve) *ecdsa.PrivateKey { return must(ecdsa.GenerateKey(c, rand.Reader)) }
	_, ed := must2(ed25519.GenerateKey(rand.Reader))
	keys := []struct {
		alg         jose.SignatureAlgorithm
		priv, other crypto.Signer
	}{
		{jose.ES256, ec(elliptic.P256()), ec(elliptic.P256())},
		{jose.ES384, ec(elliptic.P384()), ec(elliptic.P384())},
		{jose.ES512, ec(elliptic.P521()), ec(elliptic.P521())},
		{jose.EdDSA, ed, must3(ed25519.GenerateKey(rand.Reader))},
		{jose.RS256, must(rsa.GenerateKey(rand.Reader, 2048)), must(rsa.GenerateKey(rand.Reader, 2048))},
	}
	for _, k := range keys {
		t.Run(string(k.alg), func(t *testing.T) {
			payload := []byte(`{"identifiers":[{"type":"dns","value":"a.example"}]}`)
			body := signJWS(t, k.alg, k.priv, payload, false)
			m, err := parseJWS(body)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if m.Alg != string(k.alg) || m.KID != "https://ca/acme/p/account/a" || m.Nonce != "n" || m.URL != "https://ca/acme/p/new-order" {
				t.Fatalf("header read as %+v", m)
			}
			pub := &jose.JSONWebKey{Key: k.priv.Public()}
			if !algMatchesKey(m.Alg, pub) {
				t.Fatalf("%s does not match its own key", m.Alg)
			}
			if !m.verifySig(k.priv.Public()) || string(m.payload) != string(payload) {
				t.Fatalf("verify: %v, payload %q", m.verifySig(k.priv.Public()), m.payload)
			}
			if m.verifySig(k.other.Public()) {
				t.Fatal("verified with another key")
			}
			var flat map[string]string
			json.Unmarshal(body, &flat)
			for _, part := range []string{"payload", "protected"} {
				tampered := map[string]string{"protected": flat["protected"], "payload": flat["payload"], "signature": flat["signature"]}
				raw, _ := base64.RawURLEncoding.DecodeString(tampered[part])
				raw = append(raw[:len(raw)-1:len(raw)-1], '}', ' ')
				tampered[part] = base64.RawURLEncoding.EncodeToString(raw)
				b, _ := json.Marshal(tampered)
				if m, err := parseJWS(b); err == nil {
					if m.verifySig(k.priv.Public()) {
						t.Fatalf("verified with a changed %s", part)
					}
				}
			}
			// An embedded key reads back as the signer's.
			m, err = parseJWS(signJWS(t, k.alg, k.priv, payload, true))
			if err != nil || m.JWK == nil || !m.JWK.IsPublic() {
				t.Fatalf("embedded jwk: %v, %+v", err, m)
			}
			if !m.verifySig(m.JWK.Key) {
				t.Fatal("the embedded key does not verify")
			}
		})
	}
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

func must3(_ ed25519.PublicKey, b ed25519.PrivateKey, err error) ed25519.PrivateKey {
	if err != nil {
		panic(err)
	}
	return b
}

// Shapes ACME does not allow are refused before any signature is checked,
// each with an ACME problem type.
func TestJWSRefusesOtherShapes(t *testing.T) {
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	hdr := func(h string) string {
		return `{"protected":"` + b64(h) + `","payload":"","signature":"` + b64("sig") + `"}`
	}
	good := `{"alg":"ES256","nonce":"n","url":"https://ca/x","kid":"k"}`
	cases := map[string]struct{ body, want string }{
		"general serialization": {`{"payload":"","signatures":[{"protected":"` + b64(good) + `","signature":"` + b64("s") + `"}]}`, ProbMalformed},
		"compact serialization": {b64(good) + ".." + b64("s"), ProbMalformed},
		"unprotected header":    {`{"protected":"` + b64(good) + `","header":{"kid":"k"},"payload":"","signature":"` + b64("s") + `"}`, ProbMalformed},
		"two objects":           {hdr(good) + hdr(good), ProbMalformed},
		"no signature":          {`{"protected":"` + b64(good) + `","payload":""}`, ProbMalformed},
		"padded base64":         {`{"protected":"` + base64.URLEncoding.EncodeToString([]byte(good+" ")) + `","payload":"","signature":"` + b64("s") + `"}`, ProbMalformed},
		"alg none":              {hdr(`{"alg":"none","nonce":"n","url":"https://ca/x","kid":"k"}`), ProbBadSignatureAlgorithm},
		"alg HS256":             {hdr(`{"alg":"HS256","nonce":"n","url":"https://ca/x","kid":"k"}`), ProbBadSignatureAlgorithm},
		"alg PS256":             {hdr(`{"alg":"PS256","nonce":"n","url":"https://ca/x","kid":"k"}`), ProbBadSignatureAlgorithm},
		"crit":                  {hdr(`{"alg":"ES256","nonce":"n","url":"https://ca/x","kid":"k","crit":["b64"],"b64":false}`), ProbMalformed},
		"b64":                   {hdr(`{"alg":"ES256","nonce":"n","url":"https://ca/x","kid":"k","b64":false}`), ProbMalformed},
		"no url":                {hdr(`{"alg":"ES256","nonce":"n","kid":"k"}`), ProbMalformed},
		"header not an object":  {hdr(`["alg"]`), ProbMalformed},
		"jwk null":              {hdr(`{"alg":"ES256","nonce":"n","url":"https://ca/x","jwk":null}`), ProbBadPublicKey},
		"too large":             {hdr(good)[:10] + strings.Repeat(" ", maxJWS), ProbMalformed},
		// Read strictly: what a proxy reading the first member or exact
		// names sees is what is acted on.
		"protected twice":      {`{"protected":"` + b64(good) + `","protected":"` + b64(good) + `","payload":"","signature":"` + b64("s") + `"}`, ProbMalformed},
		"Protected":            {`{"Protected":"` + b64(good) + `","payload":"","signature":"` + b64("s") + `"}`, ProbMalformed},
		"kid twice":            {hdr(`{"alg":"ES256","nonce":"n","url":"https://ca/x","kid":"a","kid":"k"}`), ProbMalformed},
		"alg twice":            {hdr(`{"alg":"none","nonce":"n","url":"https://ca/x","kid":"k","alg":"ES256"}`), ProbMalformed},
		"url folded":           {hdr(`{"alg":"ES256","nonce":"n","URL":"https://ca/x","kid":"k"}`), ProbMalformed},
		"trailing brace":       {hdr(good) + "}", ProbMalformed},
		"trailing header data": {hdr(good + "]"), ProbMalformed},
		"no payload":           {`{"protected":"` + b64(good) + `","signature":"` + b64("s") + `"}`, ProbMalformed},
		"null payload":         {`{"protected":"` + b64(good) + `","payload":null,"signature":"` + b64("s") + `"}`, ProbMalformed},
		"numeric kid":          {hdr(`{"alg":"ES256","nonce":"n","url":"https://ca/x","kid":1}`), ProbMalformed},
	}
	for name, c := range cases {
		_, err := parseJWS([]byte(c.body))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if got := ProblemOf(err).Type; got != c.want {
			t.Errorf("%s: %s, want %s (%v)", name, got, c.want, err)
		}
	}
}

// A signature of the wrong length for its curve never verifies (nor
// panics), and neither does an algorithm's signature checked with a key
// of another type.
func TestJWSSignatureLengths(t *testing.T) {
	k := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	m, err := parseJWS(signJWS(t, jose.ES256, k, []byte("{}"), false))
	if err != nil {
		t.Fatal(err)
	}
	full := m.sig
	for _, n := range []int{0, 1, 63, 65, 128} {
		m.sig = make([]byte, n)
		copy(m.sig, full)
		if m.verifySig(k.Public()) {
			t.Errorf("a %d-byte ES256 signature verified", n)
		}
	}
	m.sig = full
	if m.verifySig(struct{}{}) {
		t.Error("verified with a key of no known type")
	}
}

// The parse every ACME request pays, beside go-jose's general parser
// that it replaced.
func BenchmarkParseJWS(b *testing.B) {
	k := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	body := signJWS(&testing.T{}, jose.ES256, k, []byte(`{"identifiers":[{"type":"dns","value":"a.example"}]}`), false)
	b.Run("quorumca", func(b *testing.B) {
		for b.Loop() {
			if _, err := parseJWS(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-jose", func(b *testing.B) {
		for b.Loop() {
			if _, err := jose.ParseSignedJSON(string(body), []jose.SignatureAlgorithm{jose.ES256}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

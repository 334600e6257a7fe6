package node

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/authority"
)

func csrFor(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// Every malformed, oversized, forged, replayed or unauthorized request gets a
// 4xx JSON error and changes no node's state.
func TestBadInputsAreRefusedAndChangeNothing(t *testing.T) {
	c := newTestCluster(t, 3)
	n := c.Followers()[0]

	used := c.mintToken(n, "1h", "used.example")
	usedSerial := c.sign(n, used, newCSR(t, newKey(t), "used.example")).Serial
	var rec struct {
		TokenID string `json:"token_id"`
	}
	c.do(n, "GET", "/v1/certs/"+usedSerial, nil, "").decode(t, &rec)
	usedID := rec.TokenID
	tok := c.mintToken(n, "1h", "ok.example")
	c.WaitConverged()
	before := c.nodes[0].node.FSM().Digest()

	goodCSR := newCSR(t, newKey(t), "ok.example")
	blk, _ := pem.Decode(goodCSR)
	tampered := bytes.Clone(blk.Bytes)
	tampered[len(tampered)-3] ^= 0xff
	badSig := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	forged := "qcet_" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	forgedAdmin := "qcat_" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	sign := func(csr []byte, token string) []byte {
		b, _ := json.Marshal(map[string]string{"csr": string(csr), "token": token})
		return b
	}
	signTTL := func(csr []byte, token, ttl string) []byte {
		b, _ := json.Marshal(map[string]string{"csr": string(csr), "token": token, "ttl": ttl})
		return b
	}

	tests := []struct {
		name         string
		method, path string
		body         []byte
		bearer       string
		status       int
		code         string
	}{
		{"sign: not JSON", "POST", "/v1/sign", []byte("{csr"), "", 400, "bad_request"},
		{"sign: empty body", "POST", "/v1/sign", nil, "", 400, "bad_request"},
		{"sign: wrong type", "POST", "/v1/sign", []byte(`{"csr": 5, "token": "x"}`), "", 400, "bad_request"},
		{"sign: unknown field", "POST", "/v1/sign", []byte(`{"csr": "x", "token": "y", "admin": true}`), "", 400, "bad_request"},
		{"sign: trailing data", "POST", "/v1/sign", append(sign(goodCSR, tok), []byte(`{}`)...), "", 400, "bad_request"},
		{"sign: oversized", "POST", "/v1/sign", sign(bytes.Repeat([]byte("A"), 100<<10), tok), "", 413, "too_large"},
		{"sign: missing token", "POST", "/v1/sign", []byte(`{"csr": "x"}`), "", 400, "bad_request"},
		{"sign: malformed token", "POST", "/v1/sign", sign(goodCSR, "hello"), "", 401, "token_invalid"},
		{"sign: forged token", "POST", "/v1/sign", sign(goodCSR, forged), "", 401, "token_invalid"},
		{"sign: admin token as enrollment token", "POST", "/v1/sign", sign(goodCSR, c.admin), "", 401, "token_invalid"},
		{"sign: replayed token", "POST", "/v1/sign", sign(newCSR(t, newKey(t), "used.example"), used), "", 409, "token_used"},
		{"sign: CSR not PEM", "POST", "/v1/sign", sign([]byte("not a csr"), tok), "", 400, "bad_csr"},
		{"sign: certificate instead of CSR", "POST", "/v1/sign", sign(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: blk.Bytes}), tok), "", 400, "bad_csr"},
		{"sign: CSR DER garbage", "POST", "/v1/sign", sign(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), tok), "", 400, "bad_csr"},
		{"sign: CSR bad signature", "POST", "/v1/sign", sign(badSig, tok), "", 400, "bad_csr"},
		{"sign: RSA 1024", "POST", "/v1/sign", sign(csrFor(t, rsa1024, &x509.CertificateRequest{DNSNames: []string{"ok.example"}}), tok), "", 400, "key_too_weak"},
		{"sign: P-224", "POST", "/v1/sign", sign(csrFor(t, p224, &x509.CertificateRequest{DNSNames: []string{"ok.example"}}), tok), "", 400, "key_type_not_allowed"},
		{"sign: no names", "POST", "/v1/sign", sign(csrFor(t, newKey(t), &x509.CertificateRequest{}), tok), "", 400, "bad_csr"},
		{"sign: invalid name", "POST", "/v1/sign", sign(csrFor(t, newKey(t), &x509.CertificateRequest{DNSNames: []string{"bad name!"}}), tok), "", 400, "bad_csr"},
		{"sign: common name not a name", "POST", "/v1/sign", sign(csrFor(t, newKey(t), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "bad name!"}, DNSNames: []string{"ok.example"}}), tok), "", 403, "san_not_allowed"},
		{"sign: bad ttl", "POST", "/v1/sign", []byte(`{"csr": "x", "token": "y", "ttl": "1 year"}`), "", 400, "bad_request"},
		{"sign: ttl too long", "POST", "/v1/sign", signTTL(goodCSR, tok, "100000h"), "", 400, "ttl_not_allowed"},
		{"sign: malformed JWT", "POST", "/v1/sign", sign(goodCSR, "a.b.c"), "", 401, "token_invalid"},
		{"sign: JWT of unknown provisioner", "POST", "/v1/sign", sign(goodCSR, unknownIssuerJWT(t)), "", 400, "provisioner_unknown"},
		{"sign: name not allowed", "POST", "/v1/sign", sign(newCSR(t, newKey(t), "ok.example", "evil.example"), tok), "", 403, "san_not_allowed"},
		{"sign: other name only", "POST", "/v1/sign", sign(newCSR(t, newKey(t), "evil.example"), tok), "", 403, "san_not_allowed"},
		{"tokens: no credentials", "POST", "/v1/admin/tokens", []byte(`{"sans": ["a.example"]}`), "", 401, "unauthorized"},
		{"tokens: malformed credentials", "POST", "/v1/admin/tokens", []byte(`{"sans": ["a.example"]}`), "letmein", 401, "unauthorized"},
		{"tokens: forged credentials", "POST", "/v1/admin/tokens", []byte(`{"sans": ["a.example"]}`), forgedAdmin, 401, "unauthorized"},
		{"tokens: enrollment token as admin", "POST", "/v1/admin/tokens", []byte(`{"sans": ["a.example"]}`), tok, 401, "unauthorized"},
		{"tokens: no names", "POST", "/v1/admin/tokens", []byte(`{"sans": []}`), c.admin, 400, "bad_request"},
		{"tokens: bad name", "POST", "/v1/admin/tokens", []byte(`{"sans": ["-bad-.example"]}`), c.admin, 400, "bad_request"},
		{"tokens: bad ttl", "POST", "/v1/admin/tokens", []byte(`{"sans": ["a.example"], "ttl": "soon"}`), c.admin, 400, "bad_request"},
		{"tokens: ttl too long", "POST", "/v1/admin/tokens", []byte(`{"sans": ["a.example"], "ttl": "100000h"}`), c.admin, 400, "bad_request"},
		{"tokens: negative ttl", "POST", "/v1/admin/tokens", []byte(`{"sans": ["a.example"], "ttl": "-1h"}`), c.admin, 400, "bad_request"},
		{"tokens: too many names", "POST", "/v1/admin/tokens", []byte(`{"sans": [` + strings.Repeat(`"a.example",`, 150) + `"b.example"]}`), c.admin, 400, "bad_request"},
		{"tokens: not JSON", "POST", "/v1/admin/tokens", []byte(`sans=a`), c.admin, 400, "bad_request"},
		{"tokens: unknown provisioner", "POST", "/v1/admin/tokens", []byte(`{"sans": ["a.example"], "provisioner": "nope"}`), c.admin, 400, "provisioner_unknown"},
		{"token revoke: no credentials", "DELETE", "/v1/admin/tokens/abc", nil, "", 401, "unauthorized"},
		{"token revoke: unknown", "DELETE", "/v1/admin/tokens/abc", nil, c.admin, 404, "token_unknown"},
		{"token revoke: used", "DELETE", "/v1/admin/tokens/" + usedID, nil, c.admin, 409, "token_used"},
		{"renew: no certificate", "POST", "/v1/renew", nil, "", 401, "renewal_unauthenticated"},
		{"renew: garbage bearer", "POST", "/v1/renew", nil, "x.y.z", 401, "token_invalid"},
		{"renew: not JSON", "POST", "/v1/renew", []byte("{"), "", 400, "bad_request"},
		{"revoke: no credentials", "POST", "/v1/revoke", []byte(`{"serial": "` + usedSerial + `"}`), "", 401, "unauthorized"},
		{"revoke: bad reason", "POST", "/v1/revoke", []byte(`{"serial": "` + usedSerial + `", "reason": "boredom"}`), c.admin, 400, "bad_request"},
		{"revoke: hold is not offered", "POST", "/v1/revoke", []byte(`{"serial": "` + usedSerial + `", "reason": "certificateHold"}`), c.admin, 400, "bad_request"},
		{"revoke: unknown serial", "POST", "/v1/revoke", []byte(`{"serial": "abcdef"}`), c.admin, 404, "certificate_unknown"},
		{"revoke: bad serial", "POST", "/v1/revoke", []byte(`{"serial": "xyz"}`), c.admin, 400, "bad_request"},
		// OCSP refusals are OCSP responses: TestOCSPErrorsAreOCSPResponses.
		{"ocsp responder: no credentials", "PUT", "/v1/admin/authorities/default/ocsp-responder", []byte(`{"key": "softkey:/x.key"}`), "", 401, "unauthorized"},
		{"ocsp responder: unknown authority", "PUT", "/v1/admin/authorities/nope/ocsp-responder", []byte(`{"key": "softkey:/x.key"}`), c.admin, 404, "not_found"},
		{"ocsp responder: the issuing key", "PUT", "/v1/admin/authorities/default/ocsp-responder", []byte(`{"key": "` + c.pki.KeyURI + `"}`), c.admin, 400, "bad_request"},
		{"ocsp responder: key does not open", "PUT", "/v1/admin/authorities/default/ocsp-responder", []byte(`{"key": "softkey:/nonexistent.key"}`), c.admin, 400, "bad_request"},
		{"ocsp responder: life too short", "PUT", "/v1/admin/authorities/default/ocsp-responder", []byte(`{"key": "softkey:/x.key", "create_keys": true, "ttl": "1h"}`), c.admin, 400, "bad_request"},
		{"ocsp responder: unknown field", "PUT", "/v1/admin/authorities/default/ocsp-responder", []byte(`{"key_uri": "softkey:/x.key"}`), c.admin, 400, "bad_request"},
		{"ocsp responder: none to show", "GET", "/v1/admin/authorities/default/ocsp-responder", nil, c.admin, 404, "not_found"},
		{"ocsp responder: none to remove", "DELETE", "/v1/admin/authorities/default/ocsp-responder", nil, c.admin, 404, "not_found"},
		{"crl: unknown authority", "GET", "/v1/authorities/nope/crl", nil, "", 404, "not_found"},
		{"roots: unknown authority", "GET", "/v1/authorities/nope/roots", nil, "", 404, "not_found"},
		{"certs: not hex", "GET", "/v1/certs/xyz", nil, "", 400, "bad_request"},
		{"certs: too long", "GET", "/v1/certs/" + strings.Repeat("a", 100), nil, "", 400, "bad_request"},
		{"certs: unknown", "GET", "/v1/certs/abcdef", nil, "", 404, "not_found"},
		{"unknown endpoint", "GET", "/v1/nothing", nil, "", 404, "not_found"},
		{"wrong method", "GET", "/v1/sign", nil, "", 405, "method_not_allowed"},
		{"internal: no secret", "POST", "/v1/internal/apply", []byte(`{}`), "", 403, "forbidden"},
		{"internal: wrong secret", "POST", "/v1/internal/join", []byte(`{"id":"x","raft_addr":"127.0.0.1:1"}`), "not-the-secret", 403, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any
			if tt.body != nil {
				body = tt.body
			}
			r := c.do(n, tt.method, tt.path, body, tt.bearer)
			if r.status != tt.status || r.errorCode() != tt.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tt.status, tt.code)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
		})
	}
	// The unused token still works: nothing above consumed it.
	c.WaitConverged()
	for _, tn := range c.nodes {
		if d := tn.node.FSM().Digest(); d != before {
			t.Errorf("%s: state changed", tn.cfg.NodeName)
		}
	}
	if s := c.sign(n, tok, goodCSR); s.Serial == "" {
		t.Error("token unusable after refused attempts")
	}
}

// unknownIssuerJWT is a well-formed, signed JWT naming no provisioner.
func unknownIssuerJWT(t *testing.T) string {
	t.Helper()
	tok, err := authority.SignJWT(newKey(t), "", nil, map[string]any{"iss": "nope", "jti": "1", "exp": time.Now().Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

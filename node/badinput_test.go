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
	c.sign(n, used, newCSR(t, newKey(t), "used.example"))
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
		{"sign: RSA 1024", "POST", "/v1/sign", sign(csrFor(t, rsa1024, &x509.CertificateRequest{DNSNames: []string{"ok.example"}}), tok), "", 400, "bad_csr"},
		{"sign: P-224", "POST", "/v1/sign", sign(csrFor(t, p224, &x509.CertificateRequest{DNSNames: []string{"ok.example"}}), tok), "", 400, "bad_csr"},
		{"sign: no names", "POST", "/v1/sign", sign(csrFor(t, newKey(t), &x509.CertificateRequest{}), tok), "", 400, "bad_csr"},
		{"sign: invalid name", "POST", "/v1/sign", sign(csrFor(t, newKey(t), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "bad name!"}}), tok), "", 400, "bad_csr"},
		{"sign: name not allowed", "POST", "/v1/sign", sign(newCSR(t, newKey(t), "ok.example", "evil.example"), tok), "", 403, "name_not_allowed"},
		{"sign: other name only", "POST", "/v1/sign", sign(newCSR(t, newKey(t), "evil.example"), tok), "", 403, "name_not_allowed"},
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

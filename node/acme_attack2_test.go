package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/registration"

	"github.com/quorumca/quorumca/authority"
)

// Attacks from outside on ARI, the internal extension RPCs, the EAB admin
// API and ACME provisioner administration.

func atk2Leaks(t *testing.T, what string, r reply) {
	t.Helper()
	low := strings.ToLower(string(r.body))
	for _, bad := range []string{"goroutine", "panic", ".go:", "/work/", "runtime error", "private key", "hmac"} {
		if strings.Contains(low, bad) {
			t.Errorf("%s: the answer leaks %q: %s", what, bad, truncateBody(r.body))
		}
	}
	if strings.Contains(string(r.body), "-----BEGIN") && strings.Contains(string(r.body), "PRIVATE") {
		t.Errorf("%s: the answer carries a private key", what)
	}
}

// jsonError insists on a 4xx with {"error":{"code","message"}}.
func atk2JSONError(t *testing.T, what string, r reply, statuses ...int) {
	t.Helper()
	atk2Leaks(t, what, r)
	ok := false
	for _, s := range statuses {
		ok = ok || r.status == s
	}
	if !ok {
		t.Errorf("%s: status %d, want one of %v: %s", what, r.status, statuses, truncateBody(r.body))
		return
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || r.errorCode() == "" {
		t.Errorf("%s: not a JSON error (%s): %s", what, r.header.Get("Content-Type"), truncateBody(r.body))
	}
}

// problem insists on a 4xx application/problem+json with an ACME type.
func atk2Problem(t *testing.T, what string, r reply, statuses ...int) {
	t.Helper()
	atk2Leaks(t, what, r)
	ok := false
	for _, s := range statuses {
		ok = ok || r.status == s
	}
	if !ok {
		t.Errorf("%s: status %d, want one of %v: %s", what, r.status, statuses, truncateBody(r.body))
		return
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	if r.header.Get("Content-Type") != "application/problem+json" || json.Unmarshal(r.body, &p) != nil ||
		!strings.HasPrefix(p.Type, "urn:ietf:params:acme:error:") || p.Status != r.status {
		t.Errorf("%s: not an ACME problem (%s): %s", what, r.header.Get("Content-Type"), truncateBody(r.body))
	}
}

// tlsDo sends a request with a TLS client certificate (or none).
func atk2TLSDo(t *testing.T, e *acmeEnv, cert *tls.Certificate, method, url string, body []byte) (reply, error) {
	t.Helper()
	tr := e.c.client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	tr.DisableKeepAlives = true
	cl := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cl.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

func TestACMEAttack2(t *testing.T) {
	e := newACMEEnv(t, 3)
	ctx := context.Background()
	n0, n1 := e.c.nodes[0], e.c.nodes[1]

	cl, u := e.client(t, "acme", nil)
	register(t, cl, u)
	e.useHTTP01(t, cl)
	res, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"atk2.acme.test"}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatal(err)
	}
	leaf := e.obtained(t, res, "atk2.acme.test")
	serial := authority.SerialHex(leaf.SerialNumber)
	certID := ariCertID(t, leaf)
	aki64 := base64.RawURLEncoding.EncodeToString(leaf.AuthorityKeyId)
	ser64 := base64.RawURLEncoding.EncodeToString(leaf.SerialNumber.Bytes())

	// Auditor (read-only) admin token.
	r := e.c.do(n0, "POST", "/v1/admin/admins", map[string]string{"name": "aud", "role": "auditor"}, e.c.admin)
	var aud struct{ Token string }
	r.decode(t, &aud)
	if r.status != http.StatusCreated || aud.Token == "" {
		t.Fatalf("make auditor: %d %s", r.status, r.body)
	}

	t.Run("ARI JSON malformed serials", func(t *testing.T) {
		for _, s := range []string{
			"zz", "-1", "0", "00", strings.Repeat("f", 65), strings.Repeat("1", 4000), "%2e%2e", "..%2f..%2fadmin",
			"0x1f", "+", "1%00", "%20" + serial, ":", "::::", "1_0", "-" + serial, "%ff%fe",
		} {
			r := e.c.do(n1, "GET", "/v1/certs/"+s+"/renewal-info", nil, "")
			if r.status >= 500 || r.status < 400 {
				t.Errorf("serial %q: %d %s", truncate2(s), r.status, truncateBody(r.body))
				continue
			}
			atk2JSONError(t, "serial "+truncate2(s), r, 400, 404)
		}
	})
	t.Run("ARI JSON unknown and equivalent serials", func(t *testing.T) {
		r := e.c.do(n1, "GET", "/v1/certs/"+strings.Repeat("ab", 20)+"/renewal-info", nil, "")
		atk2JSONError(t, "unknown serial", r, 404)
		// Leading zeros / colons / upper case name the same certificate: fine, but consistent.
		for _, s := range []string{"000" + serial, strings.ToUpper(serial)} {
			r := e.c.do(n1, "GET", "/v1/certs/"+s+"/renewal-info", nil, "")
			if r.status != 200 {
				t.Errorf("equivalent serial %q: %d %s", s, r.status, r.body)
			}
			atk2Leaks(t, "equivalent serial", r)
		}
	})
	t.Run("ARI ACME malformed cert ids", func(t *testing.T) {
		zero := base64.RawURLEncoding.EncodeToString([]byte{0})
		neg := base64.RawURLEncoding.EncodeToString([]byte{0xff, 0xff})
		huge := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0x7f}, 22))
		lead := base64.RawURLEncoding.EncodeToString(append([]byte{0, 0, 0}, leaf.SerialNumber.Bytes()...))
		for _, id := range []string{
			"", ".", "abc", aki64, aki64 + ".", "." + ser64, aki64 + "." + zero, aki64 + "." + huge,
			aki64 + "." + ser64 + "." + ser64, aki64 + "." + ser64 + "=", aki64 + "=." + ser64,
			aki64 + ".!!!", "!!!." + ser64, strings.Repeat("A", 300) + "." + ser64, strings.Repeat("A", 5000),
			aki64 + "." + neg, "..%2f..%2fdirectory", "%2e%2e", aki64 + "." + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xab}, 20)),
			base64.RawURLEncoding.EncodeToString([]byte("other-issuer-aki-xx")) + "." + ser64,
		} {
			r := e.c.do(n1, "GET", "/acme/acme/renewal-info/"+id, nil, "")
			if r.status == http.StatusMovedPermanently || r.status == http.StatusTemporaryRedirect || r.status == http.StatusPermanentRedirect {
				continue // the mux cleaning a path: no data
			}
			if r.status == 200 {
				t.Errorf("cert id %q answered 200: %s", truncate2(id), r.body)
				continue
			}
			if r.status == 405 && (id == "" || id == "." || strings.Contains(id, "%2f")) {
				continue
			}
			atk2Problem(t, "cert id "+truncate2(id), r, 400, 404)
		}
		// The same certificate with a zero-padded serial: the same answer, not a 500.
		r := e.c.do(n1, "GET", "/acme/acme/renewal-info/"+aki64+"."+lead, nil, "")
		t.Logf("zero-padded serial: %d", r.status)
		if r2 := e.c.do(n1, "GET", "/acme/acme/renewal-info/"+aki64+"%2e"+ser64, nil, ""); r2.status >= 500 {
			t.Errorf("%%2e separator: %d", r2.status)
		}
		if r.status >= 500 {
			t.Errorf("zero-padded serial: %d %s", r.status, r.body)
		}
		// Through a provisioner that does not exist or is not acme.
		for _, p := range []string{"nope", "..", "%2e%2e", strings.Repeat("p", 300)} {
			r := e.c.do(n1, "GET", "/acme/"+p+"/renewal-info/"+certID, nil, "")
			if r.status == 200 || r.status >= 500 {
				t.Errorf("provisioner %q: %d %s", truncate2(p), r.status, truncateBody(r.body))
			}
		}
		// The real one works.
		if r := e.c.do(n1, "GET", "/acme/acme/renewal-info/"+certID, nil, ""); r.status != 200 {
			t.Errorf("real cert id: %d %s", r.status, r.body)
		}
	})
	t.Run("ARI ACME for a certificate of another provisioner", func(t *testing.T) {
		// A cert issued through "acme" queried through "acme-eab": the
		// certificate belongs to another directory.
		r := e.c.do(n1, "GET", "/acme/acme-eab/renewal-info/"+certID, nil, "")
		if r.status != http.StatusNotFound {
			t.Errorf("acme-eab's ARI answers for a certificate of provisioner acme: %d %s", r.status, r.body)
		}
		if r.status >= 500 {
			t.Errorf("%d %s", r.status, r.body)
		}
	})

	// --- internal extension RPCs ---
	eeKey, _ := pem.Decode(res.PrivateKey)
	var eeCert *tls.Certificate
	if eeKey != nil {
		c, err := tls.X509KeyPair(res.Certificate, res.PrivateKey)
		if err == nil {
			eeCert = &c
		} else {
			t.Logf("end-entity key pair: %v", err)
		}
	}
	selfKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: n0.cfg.NodeName},
		DNSNames: []string{"node.quorumca.internal", n0.cfg.NodeName + ".node.quorumca.internal"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	selfDER, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &selfKey.PublicKey, selfKey)
	selfCert := &tls.Certificate{Certificate: [][]byte{selfDER}, PrivateKey: selfKey}

	rpcBodies := map[string][]byte{
		"acme-nonce":    []byte(`{"nonce":"AAAA"}`),
		"acme-validate": []byte(`{"type":"http-01","identifier":{"type":"dns","value":"atk2.acme.test"},"token":"x","key_authorization":"x"}`),
	}
	for _, who := range []struct {
		name string
		cert *tls.Certificate
	}{{"no client cert", nil}, {"issued end-entity cert", eeCert}, {"self-signed node impostor", selfCert}} {
		t.Run("internal RPC from outside: "+who.name, func(t *testing.T) {
			if who.cert == nil && who.name != "no client cert" {
				t.Skip("no certificate")
			}
			for name, body := range rpcBodies {
				r, err := atk2TLSDo(t, e, who.cert, "POST", "https://"+n0.node.APIAddr()+"/v1/internal/x/"+name, body)
				if err != nil {
					t.Logf("%s: handshake refused: %v", name, err)
					continue
				}
				atk2JSONError(t, name, r, 403)
			}
			for _, name := range []string{"nope", "acme-validate/..", "..%2fapply", "ACME-NONCE", strings.Repeat("x", 3000), "acme-nonce%00"} {
				r, err := atk2TLSDo(t, e, who.cert, "POST", "https://"+n0.node.APIAddr()+"/v1/internal/x/"+name, []byte(`{}`))
				if err != nil {
					continue
				}
				if r.status < 400 || r.status >= 500 {
					t.Errorf("unknown extension %q: %d %s", truncate2(name), r.status, truncateBody(r.body))
				}
				// An outsider should not learn which extensions exist:
				// refused the same way as a known one.
				if r.status != 403 && r.status != 301 && r.status != 307 && r.status != 308 {
					t.Errorf("unknown extension %q from outside: %d (known ones are 403): an oracle of registered RPC names: %s", truncate2(name), r.status, truncateBody(r.body))
				}
			}
			// GET on a known extension.
			if r, err := atk2TLSDo(t, e, who.cert, "GET", "https://"+n0.node.APIAddr()+"/v1/internal/x/acme-nonce", nil); err == nil && (r.status < 400 || r.status >= 500) {
				t.Errorf("GET acme-nonce: %d %s", r.status, r.body)
			}
		})
	}

	// --- EAB admin API ---
	t.Run("EAB without a token", func(t *testing.T) {
		atk2JSONError(t, "create", e.c.do(n0, "POST", "/v1/admin/acme/eab", map[string]string{"provisioner": "acme-eab"}, ""), 401)
		atk2JSONError(t, "create bad token", e.c.do(n0, "POST", "/v1/admin/acme/eab", map[string]string{"provisioner": "acme-eab"}, "garbage"), 401)
		atk2JSONError(t, "revoke", e.c.do(n0, "DELETE", "/v1/admin/acme/eab/eab_x", nil, ""), 401)
	})
	t.Run("EAB with an auditor token", func(t *testing.T) {
		r := e.c.do(n0, "POST", "/v1/admin/acme/eab", map[string]string{"provisioner": "acme-eab"}, aud.Token)
		atk2JSONError(t, "auditor create", r, 403)
		if strings.Contains(string(r.body), `"key"`) {
			t.Errorf("auditor got a key: %s", r.body)
		}
		// Revoke a real key as auditor.
		r = e.c.do(n0, "POST", "/v1/admin/acme/eab", map[string]string{"provisioner": "acme-eab"}, e.c.admin)
		var k struct{ ID, Key string }
		r.decode(t, &k)
		atk2JSONError(t, "auditor revoke", e.c.do(n1, "DELETE", "/v1/admin/acme/eab/"+k.ID, nil, aud.Token), 403)
		// Still usable: bind it.
		cl2, u2 := e.client(t, "acme-eab", nil)
		reg, err := cl2.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: k.ID, HmacEncoded: k.Key})
		if err != nil {
			t.Errorf("an auditor's refused revocation nevertheless took effect: %v", err)
		}
		u2.reg = reg
	})
	t.Run("EAB bad inputs", func(t *testing.T) {
		for _, b := range []any{
			map[string]string{"provisioner": "nope"},
			map[string]string{"provisioner": ""},
			map[string]string{},
			map[string]string{"provisioner": "default"},
			map[string]string{"provisioner": "acme-eab", "reference": strings.Repeat("r", 129)},
			map[string]string{"provisioner": "acme-eab", "reference": strings.Repeat("r", 60000)},
			map[string]string{"provisioner": "acme-eab", "ttl": "-1h"},
			map[string]string{"provisioner": "acme-eab", "ttl": "0s"},
			map[string]string{"provisioner": "acme-eab", "ttl": "abc"},
			map[string]string{"provisioner": "acme-eab", "ttl": "99999999999999h"},
			map[string]any{"provisioner": 5},
			map[string]any{"provisioner": "acme-eab", "extra": 1},
			[]byte(`{"provisioner":"acme-eab"`),
			[]byte(`[]`),
			[]byte(strings.Repeat(" ", 2<<20)),
		} {
			r := e.c.do(n0, "POST", "/v1/admin/acme/eab", b, e.c.admin)
			var bs string
			if bb, ok := b.([]byte); ok {
				bs = truncate2(string(bb))
			} else {
				j, _ := json.Marshal(b)
				bs = truncate2(string(j))
			}
			if r.status == http.StatusCreated {
				t.Errorf("%s: created: %s", bs, truncateBody(r.body))
				continue
			}
			atk2JSONError(t, bs, r, 400, 404, 409, 413, 422)
		}
		// Non-acme provisioner: find one.
		r := e.c.do(n0, "GET", "/v1/admin/provisioners", nil, e.c.admin)
		var ps []struct{ Name, Kind string }
		var wrap struct {
			Provisioners []struct{ Name, Kind string }
		}
		if json.Unmarshal(r.body, &ps) != nil {
			json.Unmarshal(r.body, &wrap)
			ps = wrap.Provisioners
		}
		for _, p := range ps {
			if p.Kind != "acme" {
				r := e.c.do(n0, "POST", "/v1/admin/acme/eab", map[string]string{"provisioner": p.Name}, e.c.admin)
				if r.status == http.StatusCreated {
					t.Errorf("EAB key for non-acme provisioner %s (%s): %s", p.Name, p.Kind, r.body)
				} else {
					atk2JSONError(t, "non-acme "+p.Name, r, 400, 404, 409, 422)
				}
			}
		}
		// A huge but valid ttl.
		r = e.c.do(n0, "POST", "/v1/admin/acme/eab", map[string]string{"provisioner": "acme-eab", "ttl": "2000000h"}, e.c.admin)
		if r.status != http.StatusBadRequest {
			t.Errorf("an EAB key of ttl 2000000h (~228 years): %d %s", r.status, r.body)
		} else if r.status >= 500 {
			t.Errorf("huge ttl: %d %s", r.status, r.body)
		}
	})
	t.Run("EAB revoke unknown ids", func(t *testing.T) {
		for _, id := range []string{"eab_nope", "nope", strings.Repeat("a", 5000), "%2e%2e", "..%2f..%2fadmins", "eab_%00", "%20"} {
			r := e.c.do(n0, "DELETE", "/v1/admin/acme/eab/"+id, nil, e.c.admin)
			if r.status == http.StatusNoContent || r.status < 400 && r.status != 301 && r.status != 307 && r.status != 308 {
				t.Errorf("revoke %q: %d %s", truncate2(id), r.status, truncateBody(r.body))
				continue
			}
			if r.status >= 500 {
				t.Errorf("revoke %q: %d %s", truncate2(id), r.status, truncateBody(r.body))
				continue
			}
			if r.status >= 400 && r.status != 405 {
				atk2JSONError(t, "revoke "+truncate2(id), r, 400, 404, 409)
			}
		}
	})
	t.Run("EAB revoke a bound key keeps the account", func(t *testing.T) {
		r := e.c.do(n0, "POST", "/v1/admin/acme/eab", map[string]string{"provisioner": "acme-eab", "reference": "bound"}, e.c.admin)
		var k struct{ ID, Key string }
		r.decode(t, &k)
		cl3, u3 := e.client(t, "acme-eab", nil)
		reg, err := cl3.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: k.ID, HmacEncoded: k.Key})
		if err != nil {
			t.Fatal(err)
		}
		u3.reg = reg
		r = e.c.do(n1, "DELETE", "/v1/admin/acme/eab/"+k.ID, nil, e.c.admin)
		if r.status >= 500 {
			t.Errorf("revoke bound: %d %s", r.status, r.body)
		}
		t.Logf("revoke bound key: %d %s", r.status, r.body)
		r = e.c.do(n1, "DELETE", "/v1/admin/acme/eab/"+k.ID, nil, e.c.admin)
		if r.status >= 500 {
			t.Errorf("revoke bound twice: %d %s", r.status, r.body)
		}
		e.useHTTP01(t, cl3)
		if _, err := cl3.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"bound.acme.test"}, Bundle: true, KeyType: certcrypto.EC256}); err != nil {
			t.Errorf("the bound account is unusable after revoking its EAB key: %v", err)
		}
		// And the key cannot bind a second account.
		cl4, _ := e.client(t, "acme-eab", nil)
		if _, err := cl4.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: k.ID, HmacEncoded: k.Key}); err == nil {
			t.Errorf("a revoked, bound EAB key bound another account")
		}
	})
	t.Run("EAB key of one acme provisioner used at another", func(t *testing.T) {
		r := e.c.do(n0, "POST", "/v1/admin/acme/eab", map[string]string{"provisioner": "acme"}, e.c.admin)
		var k struct{ ID, Key string }
		r.decode(t, &k)
		if r.status != http.StatusCreated {
			t.Skipf("%d %s", r.status, r.body)
		}
		cl5, _ := e.client(t, "acme-eab", nil)
		if _, err := cl5.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: k.ID, HmacEncoded: k.Key}); err == nil {
			t.Errorf("an EAB key minted for acme bound an account at acme-eab")
		}
	})

	// --- ACME provisioner administration ---
	pol := map[string]any{"dns": []string{".acme.test"}}
	t.Run("ACME provisioner bad settings", func(t *testing.T) {
		for i, doc := range []map[string]any{
			{"name": "atk-a1", "kind": "acme", "authority": authority.DefaultAuthority, "policy": pol, "acme": map[string]any{"challenges": []string{"http-02"}}},
			{"name": "atk-a2", "kind": "acme", "authority": authority.DefaultAuthority, "policy": pol, "acme": map[string]any{"challenges": []string{"HTTP-01"}}},
			{"name": "atk-a3", "kind": "acme", "authority": authority.DefaultAuthority, "policy": pol, "acme": map[string]any{"challenges": []string{""}}},
			{"name": "atk-a4", "kind": "acme", "authority": authority.DefaultAuthority, "policy": pol, "acme": map[string]any{"challenges": "http-01"}},
			{"name": "atk-a5", "kind": "acme", "authority": authority.DefaultAuthority, "policy": pol, "acme": map[string]any{"challenges": []string{strings.Repeat("x", 10000)}}},
			{"name": "atk-a6", "kind": "enrollment-token", "authority": authority.DefaultAuthority, "policy": pol, "acme": map[string]any{"require_eab": true}},
			{"name": "atk-a7", "kind": "jwk", "authority": authority.DefaultAuthority, "policy": pol, "acme": map[string]any{}},
			{"name": "atk-a8", "kind": "acme", "authority": authority.DefaultAuthority, "policy": pol, "jwk": map[string]any{"kty": "EC"}},
			{"name": "atk-a9", "kind": "acme", "authority": "admin", "policy": pol},
			{"name": "atk-a10", "kind": "ACME", "authority": authority.DefaultAuthority, "policy": pol},
			{"name": "atk-a11", "kind": "acme", "authority": authority.DefaultAuthority, "policy": pol, "acme": map[string]any{"require_eab": "yes"}},
		} {
			r := e.c.do(n0, "POST", "/v1/admin/provisioners", doc, e.c.admin)
			if r.status == http.StatusCreated {
				t.Errorf("doc %d (%v) accepted: %s", i, doc["name"], truncateBody(r.body))
				continue
			}
			atk2JSONError(t, doc["name"].(string), r, 400, 409, 422)
		}
		// Auditor may not create an acme provisioner.
		r := e.c.do(n0, "POST", "/v1/admin/provisioners", map[string]any{"name": "atk-aud", "kind": "acme", "authority": authority.DefaultAuthority, "policy": pol}, aud.Token)
		atk2JSONError(t, "auditor create acme provisioner", r, 403)
		// Duplicate challenge names.
		r = e.c.do(n0, "POST", "/v1/admin/provisioners", map[string]any{"name": "atk-dup", "kind": "acme", "authority": authority.DefaultAuthority, "policy": pol,
			"acme": map[string]any{"challenges": []string{"http-01", "http-01", "http-01"}}}, e.c.admin)
		if r.status != http.StatusBadRequest {
			t.Errorf("duplicate challenge names: %d %s", r.status, r.body)
		} else if r.status >= 500 {
			t.Errorf("dup challenges: %d %s", r.status, r.body)
		}
	})
	t.Run("ACME provisioner kind changes", func(t *testing.T) {
		// An acme provisioner with an account and an EAB key.
		r := e.c.do(n0, "POST", "/v1/admin/provisioners", map[string]any{"name": "atk-k", "kind": "acme", "authority": authority.DefaultAuthority, "policy": pol,
			"acme": map[string]any{"require_eab": true}}, e.c.admin)
		var p struct{ Version uint64 }
		r.decode(t, &p)
		if r.status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		r = e.c.do(n0, "POST", "/v1/admin/acme/eab", map[string]string{"provisioner": "atk-k"}, e.c.admin)
		var k struct{ ID, Key string }
		r.decode(t, &k)
		// acme -> enrollment-token while keeping acme settings: refused.
		r = e.c.do(n0, "PUT", "/v1/admin/provisioners/atk-k", map[string]any{"name": "atk-k", "kind": "enrollment-token", "authority": authority.DefaultAuthority, "policy": pol,
			"acme": map[string]any{"require_eab": true}, "version": p.Version}, e.c.admin)
		if r.status == 200 {
			t.Errorf("kind change keeping acme settings accepted: %s", r.body)
		}
		// acme -> enrollment-token: then the directory must be gone and EAB minting refused.
		r = e.c.do(n0, "PUT", "/v1/admin/provisioners/atk-k", map[string]any{"name": "atk-k", "kind": "enrollment-token", "authority": authority.DefaultAuthority, "policy": pol, "version": p.Version}, e.c.admin)
		t.Logf("acme -> enrollment-token: %d", r.status)
		if r.status == 200 {
			r.decode(t, &p)
			if r := e.c.do(n1, "GET", "/acme/atk-k/directory", nil, ""); r.status == 200 {
				t.Errorf("directory of a no-longer-acme provisioner: %s", r.body)
			}
			if r := e.c.do(n1, "POST", "/v1/admin/acme/eab", map[string]string{"provisioner": "atk-k"}, e.c.admin); r.status == http.StatusCreated {
				t.Errorf("EAB key for a no-longer-acme provisioner: %s", r.body)
			}
			// Back to acme WITHOUT require_eab: the old EAB key is harmless; with
			// require_eab again, does the old unbound key still work? (expected: yes; note only)
			r = e.c.do(n0, "PUT", "/v1/admin/provisioners/atk-k", map[string]any{"name": "atk-k", "kind": "acme", "authority": authority.DefaultAuthority, "policy": pol,
				"acme": map[string]any{"require_eab": true}, "version": p.Version}, e.c.admin)
			t.Logf("enrollment-token -> acme: %d %s", r.status, truncateBody(r.body))
			if r.status >= 500 {
				t.Errorf("back to acme: %d %s", r.status, r.body)
			}
		}
		// Server kind to/from acme refused.
		r = e.c.do(n0, "GET", "/v1/admin/provisioners/acme", nil, e.c.admin)
		var ap map[string]any
		r.decode(t, &ap)
		ap["kind"] = "server"
		delete(ap, "acme")
		r = e.c.do(n0, "PUT", "/v1/admin/provisioners/acme", ap, e.c.admin)
		t.Logf("acme -> server: %d %s", r.status, truncateBody(r.body))
		if r.status >= 500 {
			t.Errorf("acme -> server: %d", r.status)
		}
		// Auditor may not change kinds.
		r = e.c.do(n0, "GET", "/v1/admin/provisioners/acme-eab", nil, e.c.admin)
		var ep map[string]any
		r.decode(t, &ep)
		ep["acme"] = map[string]any{"require_eab": false}
		r = e.c.do(n0, "PUT", "/v1/admin/provisioners/acme-eab", ep, aud.Token)
		atk2JSONError(t, "auditor turns off require_eab", r, 403)
	})
}

func truncate2(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

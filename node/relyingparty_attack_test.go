package node

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"golang.org/x/crypto/ocsp"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/internal/testwait"
)

// newRoleAdmin creates an admin credential of a role and returns its token.
func (c *testCluster) newRoleAdmin(tn *testNode, name, role string) string {
	c.t.Helper()
	r := c.do(tn, "POST", "/v1/admin/admins", map[string]string{"name": name, "role": role}, c.admin)
	var out struct{ Token string }
	r.decode(c.t, &out)
	if r.status != http.StatusCreated || out.Token == "" {
		c.t.Fatalf("create %s admin: %d %s", role, r.status, r.body)
	}
	return out.Token
}

func issuerIDs(t *testing.T, c *testCluster, tn *testNode, name string) []string {
	t.Helper()
	var a struct {
		Issuers []struct{ ID string }
	}
	c.do(tn, "GET", "/v1/admin/authorities/"+name, nil, c.admin).decode(t, &a)
	var out []string
	for _, i := range a.Issuers {
		out = append(out, i.ID)
	}
	return out
}

// Every refusal of the relying-party admin surface (PATCH an authority,
// revoke an issuer) and of the public CRL routes is a 4xx JSON error that
// changes nothing; lower roles are refused.
func TestRelyingPartySurfaceRefusalsChangeNothing(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	auditor := c.newRoleAdmin(n, "aud", "auditor")
	operator := c.newRoleAdmin(n, "op", "operator")
	iss := issuerIDs(t, c, n, "default")[0]
	root := authority.IssuerID(mustRoot(t, c, "default"))
	c.WaitConverged()
	before := n.node.FSM().Digest()

	patch := "/v1/admin/authorities/default"
	revoke := "/v1/admin/authorities/default/issuers/" + iss + "/revoke"
	huge := []byte(`{"base_url": "http://x/` + strings.Repeat("a", 70<<10) + `"}`)
	type tc struct {
		method, path string
		body         []byte
		bearer       string
		status       int
	}
	tests := []tc{
		{"PATCH", patch, []byte(`{"base_url": "http://x.example"}`), auditor, 403},
		{"PATCH", patch, []byte(`{"base_url": "http://x.example"}`), operator, 403},
		{"PATCH", patch, []byte(`{"root_key": ""}`), operator, 403},
		{"POST", revoke, []byte(`{}`), auditor, 403},
		{"POST", revoke, []byte(`{"reason":"keyCompromise"}`), operator, 403},
		{"PATCH", patch, []byte(`{}`), "", 401},
		{"PATCH", patch, huge, c.admin, 413},
		{"PATCH", patch, []byte(`{"base_url": 5}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"root_key": null, "extra": 1}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"root_key": "softkey:/etc/passwd"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"root_key": "softkey:/etc/shadow"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"root_key": "softkey:../../../../etc/hostname"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"root_key": "softkey:/nonexistent/x.key"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"root_key": "softkey:/proc/self/environ"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"root_key": "softkey:"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"root_key": "` + c.pki.KeyURI + `"}`), c.admin, 400}, // the issuer's key
		{"PATCH", patch, []byte(`{"root_key": "awskms:x?endpoint=http://127.0.0.1:1"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"base_url": "javascript:alert(1)"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"base_url": "data:text/html,hi"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"base_url": "http://x.example\r\nX-Injected: 1"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"base_url": "http://x.example/?q=1"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"base_url": "http://x.example/#f"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"base_url": "http:///nohost"}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"crl": {"validity": "9m59s"}}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"crl": {"validity": "8785h"}}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"crl": {"refresh": "59s"}}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"crl": {"refresh": "12h1s"}}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"crl": {"validity": "1h", "refresh": "31m"}}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"crl": {"validity": "9223372036854775807ns"}}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"crl": {"validity": "1e9h"}}`), c.admin, 400},
		{"PATCH", patch, []byte(`{"crl": {"validity": "-24h"}}`), c.admin, 400},
		{"PATCH", "/v1/admin/authorities/nope", []byte(`{"base_url": "http://x.example"}`), c.admin, 404},
		{"PATCH", "/v1/admin/authorities/" + strings.Repeat("n", 5000), []byte(`{}`), c.admin, 404},
		{"PATCH", "/v1/admin/authorities/%2e%2e%2fdefault", []byte(`{"base_url": "http://x.example"}`), c.admin, 404},
		{"PATCH", "/v1/admin/authorities/default%00", []byte(`{"base_url": "http://x.example"}`), c.admin, 404},
		{"POST", revoke, []byte(`{"reason":"removeFromCRL"}`), c.admin, 400},
		{"POST", revoke, []byte(`{"reason":"certificateHold"}`), c.admin, 400},
		{"POST", revoke, []byte(`{"reason":"KEYCOMPROMISE"}`), c.admin, 400},
		{"POST", revoke, []byte(`{"reason":"` + strings.Repeat("x", 10000) + `"}`), c.admin, 400},
		{"POST", revoke, []byte(`[]`), c.admin, 400},
		{"POST", revoke, []byte(`{"reason":1}`), c.admin, 400},
		{"POST", "/v1/admin/authorities/default/issuers/" + root + "/revoke", []byte(`{}`), c.admin, 404},
		{"POST", "/v1/admin/authorities/default/issuers/" + strings.ToUpper(iss) + "/revoke", []byte(`{}`), c.admin, 404},
		{"POST", "/v1/admin/authorities/default/issuers/%2e%2e/revoke", []byte(`{}`), c.admin, 404},
		{"POST", "/v1/admin/authorities/default/issuers/" + iss + "%00/revoke", []byte(`{}`), c.admin, 404},
		{"POST", "/v1/admin/authorities/admin/issuers/" + iss + "/revoke", []byte(`{}`), c.admin, 404},
		// public routes
		{"GET", "/v1/authorities/default/roots/" + iss + "/crl", nil, "", 404},
		{"GET", "/v1/authorities/default/roots/root-" + root + "/crl", nil, "", 404},
		{"GET", "/v1/authorities/default/roots/%2e%2e%2f" + root + "/crl", nil, "", 404},
		{"GET", "/v1/authorities/default/roots/" + strings.Repeat("f", 4000) + "/crl", nil, "", 404},
		{"GET", "/v1/authorities/default/roots/" + iss + "/root.crt", nil, "", 404},
		{"GET", "/v1/authorities/nope/roots/" + root + "/crl", nil, "", 404},
		{"GET", "/v1/authorities/nope/roots/" + root + "/root.crt", nil, "", 404},
		{"GET", "/v1/authorities/nope/crls.pem", nil, "", 404},
		{"GET", "/v1/authorities/%00/crls.pem", nil, "", 404},
		{"GET", "/v1/authorities/default/issuers/" + root + "/crl", nil, "", 404},
		{"GET", "/v1/authorities/default/issuers/root-" + root + "/crl", nil, "", 404},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s %.80s %.80s", tt.method, tt.path, tt.body)
		r := c.do(n, tt.method, tt.path, tt.body, tt.bearer)
		if r.status != tt.status || r.errorCode() == "" || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %.300s (%s), want %d JSON", name, r.status, r.body, r.header.Get("Content-Type"), tt.status)
		}
		if len(r.body) > 0 {
			t.Logf("%s -> %d %.300s", name, r.status, r.body)
		}
	}
	c.WaitConverged()
	if d := n.node.FSM().Digest(); d != before {
		t.Errorf("state changed by refused requests")
	}
}

// base_url values PATCH accepts must leave issuance working, and create
// must check base_url as PATCH does.
func TestABaseURLIsCheckedWhereverItIsSet(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	for _, u := range []string{
		"http://x.example/é",
		"http://é.example",
		"http://x.example/a b",
		"http://x.example:99999",
		"http://x.example/" + strings.Repeat("a", 60<<10),
	} {
		r := c.do(n, "PATCH", "/v1/admin/authorities/default", map[string]string{"base_url": u}, c.admin)
		if r.status != http.StatusOK {
			continue
		}
		// Not an RFC 3986 URI, or not ASCII (IA5String in CDP/AIA), or
		// a certificate of 185 KB: each should be a 400.
		t.Errorf("PATCH base_url %.60q (%d chars) accepted: 200", u, len(u))
		k := newKey(t)
		tok := c.mintToken(n, "1h", "x.example")
		s := c.do(n, "POST", "/v1/sign", map[string]string{"csr": string(newCSR(t, k, "x.example")), "token": tok}, "")
		if s.status != http.StatusCreated && s.status != http.StatusOK {
			t.Errorf("base_url %.60q accepted (200), then issuance: %d %.300s", u, s.status, s.body)
		} else {
			var out signed
			s.decode(t, &out)
			cert := parsePEMCert(t, out.Certificate)
			t.Logf("  issued %d bytes, CDP %.80q OCSP %.80q", len(cert.Raw), cert.CRLDistributionPoints, cert.OCSPServer)
		}
	}
	// create and import do not check base_url as PATCH does
	for _, u := range []string{"javascript:alert(1)", "http://x.example\r\nX-Injected: 1", "file:///etc/passwd"} {
		body := map[string]any{"name": "bad" + fmt.Sprint(len(u)), "root_key": "softkey:" + c.dir + "/r" + fmt.Sprint(len(u)) + ".key",
			"key": "softkey:" + c.dir + "/i" + fmt.Sprint(len(u)) + ".key", "create_keys": true, "base_url": u}
		r := c.do(n, "POST", "/v1/admin/authorities", body, c.admin)
		if r.status != http.StatusBadRequest {
			var a struct {
				Issuers []struct{ Certificate string }
			}
			r.decode(t, &a)
			var cdp []string
			if len(a.Issuers) > 0 {
				cdp = parsePEMCert(t, a.Issuers[0].Certificate).CRLDistributionPoints
			}
			t.Errorf("create authority with base_url %q: %d (want 400, as PATCH); its intermediate's CDP: %q", u, r.status, cdp)
		}
	}
}

// Revoking an issuer: twice, with each reason, and the only issuer of an
// authority, which takes force. A secondary authority losing its last
// issuer does not take every node out of the load balancer (/v1/ready)
// for the others. (Before, it did, with "cannot sign: <nil>".)
func TestRevokingAnAuthoritysLastIssuer(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	if r := c.do(n, "GET", "/v1/ready", nil, ""); r.status != http.StatusOK {
		t.Fatalf("ready before: %d %s", r.status, r.body)
	}
	for _, reason := range []string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
		"cessationOfOperation", "privilegeWithdrawn", "aACompromise", ""} {
		name := "s" + strings.ToLower(reason)
		if reason == "" {
			name = "sempty"
		}
		c.createAuthority(n, name, "softkey:"+c.dir+"/"+name+"-root.key", "softkey:"+c.dir+"/"+name+".key")
		id := issuerIDs(t, c, n, name)[0]
		if r := c.do(n, "POST", "/v1/admin/authorities/"+name+"/issuers/"+id+"/revoke", map[string]string{"reason": reason}, c.admin); r.status != http.StatusConflict {
			t.Fatalf("revoke the last issuer without force (%s): %d %s", reason, r.status, r.body)
		}
		r := c.do(n, "POST", "/v1/admin/authorities/"+name+"/issuers/"+id+"/revoke", map[string]any{"reason": reason, "force": true}, c.admin)
		if r.status != http.StatusOK {
			t.Fatalf("revoke %s: %d %s", reason, r.status, r.body)
		}
		var a1, a2 struct {
			Issuers []struct {
				RevokedAt *time.Time `json:"revoked_at"`
			}
		}
		r.decode(t, &a1)
		c.clock.Advance(2 * time.Second) // later: another revoked_at, if it were taken again
		r2 := c.do(n, "POST", "/v1/admin/authorities/"+name+"/issuers/"+id+"/revoke", map[string]any{"reason": "keyCompromise", "force": true}, c.admin)
		r2.decode(t, &a2)
		if r2.status != http.StatusOK || a1.Issuers[0].RevokedAt == nil || a2.Issuers[0].RevokedAt == nil || !a1.Issuers[0].RevokedAt.Equal(*a2.Issuers[0].RevokedAt) {
			t.Errorf("revoke twice (%s): %d %s", reason, r2.status, r2.body)
		}
		root := mustRoot(t, c, name)
		var l *x509.RevocationList
		testwait.For(t, 10*time.Second, "root CRL listing "+name, func() bool {
			resp, err := http.Get("http://" + n.cfg.HTTPListen + "/v1/authorities/" + name + "/roots/" + authority.IssuerID(root) + "/crl")
			if err != nil || resp.StatusCode != 200 {
				if resp != nil {
					resp.Body.Close()
				}
				return false
			}
			l = readCRL(t, resp, root)
			return len(l.RevokedCertificateEntries) == 1
		})
		t.Logf("%s: root CRL entry reason %d", reason, l.RevokedCertificateEntries[0].ReasonCode)
		if want := map[string]int{"": 0}[reason]; reason == "" && l.RevokedCertificateEntries[0].ReasonCode != want {
			t.Errorf("reason \"\" listed as %d", l.RevokedCertificateEntries[0].ReasonCode)
		}
	}
	r := c.do(n, "GET", "/v1/ready", nil, "")
	t.Logf("ready after revoking a secondary authority's only issuer: %d %s", r.status, r.body)
	if r.status != http.StatusOK {
		t.Errorf("the default authority still signs, yet /v1/ready is %d: %s", r.status, r.body)
	}
	// The default authority still issues and its CRLs are served.
	c.enrollHolder(n, "still.example")
	if r := c.do(n, "GET", "/v1/authorities/default/crls.pem", nil, ""); r.status != 200 {
		t.Errorf("default crls.pem: %d", r.status)
	}
	if r := c.do(n, "GET", "/v1/authorities/sunspecified/crls.pem", nil, ""); r.status != 200 {
		t.Errorf("crls.pem of the authority whose issuer is revoked: %d %s", r.status, r.body)
	}
}

// An intermediate revoked while the cluster does not hold the root's key
// (cleared) is on the root's CRL within the CRL interval once the key is
// back, with a higher number. (Before, it waited for the hourly refresh.)
// Meanwhile the last root CRL is served until its nextUpdate, as an
// offline root's is.
func TestRootCRLCatchesUpWhenTheRootKeyIsBack(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	c.createAuthority(n, "k", "softkey:"+c.dir+"/k-root.key", "softkey:"+c.dir+"/k.key")
	if r := c.do(n, "POST", "/v1/admin/authorities/k/rotate", map[string]any{"key": "softkey:" + c.dir + "/k2.key", "create_keys": true}, c.admin); r.status != http.StatusOK {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	var a struct {
		RootKeyURI string `json:"root_key_uri"`
		RootID     string `json:"root_id"`
	}
	c.do(n, "GET", "/v1/admin/authorities/k", nil, c.admin).decode(t, &a)
	root := mustRoot(t, c, "k")
	url := "http://" + n.cfg.HTTPListen + "/v1/authorities/k/roots/" + a.RootID + "/crl"
	get := func() (int, *x509.RevocationList, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
			return resp.StatusCode, nil, ""
		}
		et := resp.Header.Get("ETag")
		return 200, readCRL(t, resp, root), et
	}
	var first *x509.RevocationList
	testwait.For(t, 10*time.Second, "first root CRL", func() bool { s, l, _ := get(); first = l; return s == 200 })
	old := issuerIDs(t, c, n, "k")[0]

	if r := c.do(n, "PATCH", "/v1/admin/authorities/k", map[string]string{"root_key": ""}, c.admin); r.status != 200 {
		t.Fatalf("clear root key: %d %s", r.status, r.body)
	}
	if r := c.do(n, "POST", "/v1/admin/authorities/k/issuers/"+old+"/revoke", map[string]string{"reason": "keyCompromise"}, c.admin); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := c.do(n, "PATCH", "/v1/admin/authorities/k", map[string]string{"root_key": a.RootKeyURI}, c.admin); r.status != 200 {
		t.Fatalf("restore root key: %d %s", r.status, r.body)
	}
	// Within the CRL interval, not the hourly refresh.
	testwait.For(t, c.crlInterval+5*time.Second, "the root CRL to list the intermediate revoked without the key", func() bool {
		s, l, _ := get()
		return s == 200 && len(l.RevokedCertificateEntries) == 1 && l.Number.Cmp(first.Number) > 0
	})
}

// After revoke-issuer: CRL validators change (no 304 for the old ETag),
// and what OCSP says of the intermediate and of a leaf it issued. Nonced
// OCSP signatures stay within the node's budget.
func TestCRLValidatorsAndNonceBudgetAfterRevokeIssuer(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	h := c.enrollHolder(n, "leaf.example") // the default authority
	base := "http://" + n.cfg.HTTPListen
	fetch := func(path, inm string) (int, string, []byte) {
		status, h, b := getIfNoneMatch(t, base+path, inm)
		return status, h.Get("ETag"), b
	}
	var a struct {
		RootID string `json:"root_id"`
	}
	c.do(n, "GET", "/v1/admin/authorities/default", nil, c.admin).decode(t, &a)
	rootPath := "/v1/authorities/default/roots/" + a.RootID + "/crl"
	s, etag, _ := fetch(rootPath, "")
	sb, betag, _ := fetch("/v1/authorities/default/crls.pem", "")
	if s != 200 || sb != 200 {
		t.Fatalf("root CRL %d, bundle %d", s, sb)
	}
	for _, inm := range []string{etag, "*", "W/" + etag, etag + ", \"x\"", `"` + strings.Repeat("a", 8000) + `"`} {
		st, _, _ := fetch(rootPath, inm)
		t.Logf("If-None-Match %.40q -> %d", inm, st)
	}
	// rotate, then revoke the old issuer of the default authority
	if r := c.do(n, "POST", "/v1/admin/authorities/default/rotate", map[string]any{"key": "softkey:" + c.dir + "/d2.key", "create_keys": true}, c.admin); r.status != 200 {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	old := authority.IssuerID(h.chain[0])
	if r := c.do(n, "POST", "/v1/admin/authorities/default/issuers/"+old+"/revoke", map[string]string{"reason": "keyCompromise"}, c.admin); r.status != 200 {
		t.Fatalf("revoke issuer: %d %s", r.status, r.body)
	}
	testwait.For(t, 10*time.Second, "a new root CRL", func() bool { st, _, _ := fetch(rootPath, etag); return st == 200 })
	testwait.For(t, 10*time.Second, "a new bundle", func() bool { st, _, _ := fetch("/v1/authorities/default/crls.pem", betag); return st == 200 })

	// OCSP for the leaf of the revoked intermediate, and for the intermediate.
	ask := func(cert, issuer *x509.Certificate) (int, []byte) {
		der, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA256})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(base+"/v1/ocsp", "application/ocsp-request", bytes.NewReader(der))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	st, body := ask(h.cert, h.chain[0])
	if r, err := ocsp.ParseResponseForCert(body, h.cert, h.chain[0]); err == nil {
		t.Logf("OCSP for a leaf of the revoked intermediate: %d status %d (0 good, 1 revoked)", st, r.Status)
	} else {
		t.Logf("OCSP for a leaf of the revoked intermediate: %d %v", st, err)
	}
	root := mustRoot(t, c, "default")
	st, body = ask(h.chain[0], root)
	r, err := ocsp.ParseResponse(body, nil)
	t.Logf("OCSP for the revoked intermediate itself: %d %v %v", st, r, err)

	// Nonce budget: 300 nonced POSTs from one source.
	plain, _ := ocsp.CreateRequest(h.cert, h.chain[0], nil)
	echoed, limited, start := 0, 0, time.Now()
	for i := 0; i < 300; i++ {
		der, v := ocspWithNonce(t, plain, 32)
		resp, err := http.Post(base+"/v1/ocsp", "application/ocsp-request", bytes.NewReader(der))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 429 {
			limited++
			continue
		}
		if info, ok := authority.ReadOCSPResponse(b); ok && bytes.Equal(info.Nonce, v) {
			echoed++
		}
	}
	el := time.Since(start)
	t.Logf("300 nonced requests in %s: %d echoed (signed fresh), %d 429", el, echoed, limited)
	if max := int(40 + 20*el.Seconds() + 1); echoed > max {
		t.Errorf("%d fresh signatures in %s, budget allows %d", echoed, el, max)
	}
}

// getIfNoneMatch GETs url, with If-None-Match when inm is set.
func getIfNoneMatch(t *testing.T, url, inm string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

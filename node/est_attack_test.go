package node

// A hostile client from outside against the EST server (RFC 7030) of a
// real three-node cluster: forged and mangled HTTP Basic credentials,
// tokens on the wrong path, CSRs the token does not cover, mangled bodies,
// stray methods and paths, reenrollment with certificates that must not
// renew, and one token raced through every node. Every refusal must be a
// 4xx JSON error (never a 500) and change nothing: no certificate, no
// spent token; each token refused along the way enrolls afterwards.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/internal/testwait"
)

// estAtkReq is one EST request, every part under the attacker's control.
type estAtkReq struct {
	method, path string
	auth         string            // the Authorization header, as is ("" none)
	auth2        string            // a second Authorization header, if any
	ctype        string            // Content-Type ("" none)
	header       map[string]string // more headers
	body         []byte
	chunked      bool    // sent without a Content-Length
	cert         *holder // the TLS client certificate, if any
}

// estAtkSend sends q to tn; it follows no redirect.
func estAtkSend(c *testCluster, tn *testNode, q estAtkReq) (reply, error) {
	tr := c.client.Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	if q.cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{q.cert.cert.Raw}, PrivateKey: q.cert.key, Leaf: q.cert.cert}}
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var body io.Reader
	if q.body != nil {
		body = bytes.NewReader(q.body)
		if q.chunked {
			body = struct{ io.Reader }{body} // no length: chunked
		}
	}
	req, err := http.NewRequest(q.method, "https://"+tn.node.APIAddr()+q.path, body)
	if err != nil {
		return reply{}, err
	}
	if q.chunked {
		req.ContentLength = -1
	}
	if q.auth != "" {
		req.Header.Set("Authorization", q.auth)
	}
	if q.auth2 != "" {
		req.Header.Add("Authorization", q.auth2)
	}
	if q.ctype != "" {
		req.Header.Set("Content-Type", q.ctype)
	}
	for k, v := range q.header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: data}, err
}

func estAtkDo(t *testing.T, c *testCluster, tn *testNode, q estAtkReq) reply {
	t.Helper()
	r, err := estAtkSend(c, tn, q)
	if err != nil {
		t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	return r
}

func estAtkBasic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// estAtkB64 is DER as EST sends it: base64 in 64-character lines.
func estAtkB64(der []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(der)
	var b bytes.Buffer
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\r\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// estAtkCert reads the certificate of a successful (re)enrollment.
func estAtkCert(t *testing.T, r reply) *x509.Certificate {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("enrollment: %d %s", r.status, truncateBody(r.body))
	}
	der, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\n", "", "\r", "").Replace(string(r.body)))
	if err != nil {
		t.Fatalf("reply is not base64: %v", err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil || len(p7.Certificates) != 1 {
		t.Fatalf("reply is not a certs-only PKCS#7 with one certificate: %v", err)
	}
	return p7.Certificates[0]
}

// estAtkRefused insists on a 4xx JSON error with one of statuses, no leak,
// and for a 401 the Basic challenge.
func estAtkRefused(t *testing.T, what string, r reply, statuses ...int) {
	t.Helper()
	if r.status >= 500 {
		t.Errorf("%s: %d %s", what, r.status, truncateBody(r.body))
		return
	}
	if len(statuses) == 0 {
		statuses = []int{400, 401, 403, 404, 405, 409, 413}
	}
	atk2JSONError(t, what, r, statuses...)
	if r.status == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("%s: 401 without a Basic challenge: %q", what, r.header.Get("WWW-Authenticate"))
	}
}

func estAtkCSR(t *testing.T, key crypto.Signer, cn string, names ...string) []byte {
	t.Helper()
	return csrDER(t, key, cn, names...)
}

type estAtkToken struct{ ID, Token, Provisioner string }

func estAtkMint(t *testing.T, c *testCluster, tn *testNode, prov, ttl string, names ...string) estAtkToken {
	t.Helper()
	req := map[string]any{"sans": names, "ttl": ttl}
	if prov != "" {
		req["provisioner"] = prov
	}
	r := c.do(tn, "POST", "/v1/admin/tokens", req, c.admin)
	if r.status != http.StatusCreated {
		t.Fatalf("mint token for %s: %d %s", prov, r.status, r.body)
	}
	var tok estAtkToken
	r.decode(t, &tok)
	return tok
}

// estAtkUnspent checks on every running node that the token is neither
// used nor revoked.
func estAtkUnspent(t *testing.T, c *testCluster, tok estAtkToken) {
	t.Helper()
	for _, tn := range c.running() {
		rec, err := tn.node.FSM().TokenByID(tok.ID)
		if err != nil {
			t.Errorf("token %s on %s: %v", tok.ID, tn.cfg.NodeName, err)
			continue
		}
		if rec.UsedBy != "" || !rec.RevokedAt.IsZero() {
			t.Errorf("token %s on %s was spent by a refused request: used by %q, revoked at %v", tok.ID, tn.cfg.NodeName, rec.UsedBy, rec.RevokedAt)
		}
	}
}

// estAtkCerts is how many certificates every node holds, once they agree.
func estAtkCerts(t *testing.T, c *testCluster) int {
	t.Helper()
	var n int
	testwait.For(t, 10*time.Second, "every node to hold the same number of certificates", func() bool {
		n = -1
		for _, tn := range c.running() {
			m := tn.node.FSM().CertCount()
			if n != -1 && m != n {
				return false
			}
			n = m
		}
		return true
	})
	return n
}

func TestESTAttack(t *testing.T) {
	c := adminCluster(t, 3)
	nodes := c.running()
	n0 := nodes[0]
	run := func(name string, f func(t *testing.T)) { t.Run(name, f) }

	// Provisioners: two that enroll over EST, an ACME one and a jwk one
	// that do not.
	jwkKey := newKey(t)
	for _, p := range []map[string]any{
		{"name": "routers", "kind": "enrollment-token", "authority": "default",
			"policy": map[string]any{"dns": []string{"*.routers.example"}, "key_types": []string{"P-256", "RSA"}}},
		{"name": "phones", "kind": "enrollment-token", "authority": "default",
			"policy": map[string]any{"dns": []string{"*.phones.example"}}},
		{"name": "acmeprov", "kind": "acme", "authority": "default",
			"policy": map[string]any{"dns": []string{".acme.example"}}},
		{"name": "jwkprov", "kind": "jwk", "authority": "default", "jwk": pubJWK(jwkKey),
			"policy": map[string]any{"dns": []string{".jwk.example"}}},
	} {
		if r := c.do(n0, "POST", "/v1/admin/provisioners", p, c.admin); r.status != http.StatusCreated {
			t.Fatalf("provisioner %s: %d %s", p["name"], r.status, r.body)
		}
	}

	const enroll, reenroll = "/.well-known/est/simpleenroll", "/.well-known/est/simplereenroll"
	pkcs10 := "application/pkcs10"
	// T1: the default provisioner's token every simpleenroll refusal uses;
	// it enrolls at the end of them.
	t1 := estAtkMint(t, c, n0, "", "1h", "dev1.example")
	t1Key := newKey(t)
	t1CSR := estAtkB64(estAtkCSR(t, t1Key, "dev1.example", "dev1.example"))
	tRouters := estAtkMint(t, c, n0, "routers", "1h", "r1.routers.example")
	certsAtStart := estAtkCerts(t, c)
	extraCerts := 0 // issued on purpose before T1 enrolls
	good := func(body []byte) estAtkReq {
		return estAtkReq{method: "POST", path: enroll, auth: estAtkBasic(t1.ID, t1.Token), ctype: pkcs10, body: body}
	}

	// ------------------------------------------------------ credentials
	run("credentials/none, bearer, and the token in the wrong field", func(t *testing.T) {
		for name, auth := range map[string]string{
			"no Authorization":                   "",
			"the token as a Bearer":              "Bearer " + t1.Token,
			"the token as Basic user, no pass":   estAtkBasic(t1.Token, ""),
			"ID and secret swapped":              estAtkBasic(t1.Token, t1.ID),
			"the secret as both":                 estAtkBasic(t1.Token, t1.Token),
			"empty user":                         estAtkBasic("", t1.Token),
			"empty password":                     estAtkBasic(t1.ID, ""),
			"Digest":                             `Digest username="` + t1.ID + `", response="` + t1.Token + `"`,
			"Basic with nothing":                 "Basic",
			"Basic and a space":                  "Basic ",
			"Basic, no colon":                    "Basic " + base64.StdEncoding.EncodeToString([]byte(t1.ID+t1.Token)),
			"Basic, not base64":                  "Basic " + t1.ID + ":" + t1.Token,
			"Basic, base64url":                   "Basic " + base64.URLEncoding.EncodeToString([]byte(t1.ID+":"+t1.Token+"\xfb\xff")),
			"Basic, unpadded":                    "Basic " + base64.RawStdEncoding.EncodeToString([]byte(t1.ID+":"+t1.Token+"x")),
			"Basic, two spaces":                  "Basic  " + base64.StdEncoding.EncodeToString([]byte(t1.ID+":"+t1.Token+"x")),
			"lowercase basic with a wrong ID":    "basic " + base64.StdEncoding.EncodeToString([]byte("nope:"+t1.Token)),
			"uppercase BASIC with a wrong ID":    "BASIC " + base64.StdEncoding.EncodeToString([]byte("nope:"+t1.Token)),
			"Basic with a NUL after the secret":  estAtkBasic(t1.ID, t1.Token+"\x00"),
			"Basic with a newline in the secret": estAtkBasic(t1.ID, t1.Token+"\n"),
			"Basic with a space before the ID":   estAtkBasic(" "+t1.ID, t1.Token),
			"password with a colon appended":     estAtkBasic(t1.ID, t1.Token+":"+t1.Token),
			"password after a double colon":      estAtkBasic(t1.ID, ":"+t1.Token),
			"the ID twice":                       estAtkBasic(t1.ID+t1.ID, t1.Token),
		} {
			q := good(t1CSR)
			q.auth = auth
			r := estAtkDo(t, c, nodes[len(name)%3], q)
			estAtkRefused(t, name, r, http.StatusUnauthorized)
		}
	})
	run("credentials/right secret, wrong token ID", func(t *testing.T) {
		for name, id := range map[string]string{
			"another token's ID":  tRouters.ID,
			"unknown":             "nope",
			"uppercased":          strings.ToUpper(t1.ID),
			"with a trailing dot": t1.ID + ".",
			"a prefix of it":      t1.ID[:len(t1.ID)-1],
			"overlong":            strings.Repeat("A", 20000),
			"unicode":             "ｔｏｋｅｎ-" + t1.ID,
			"unicode look-alike":  strings.Replace(t1.ID, "a", "а", 1) + "а", // Cyrillic а
			"the secret's hash":   "sha256:" + t1.ID,
		} {
			q := good(t1CSR)
			q.auth = estAtkBasic(id, t1.Token)
			r := estAtkDo(t, c, nodes[len(name)%3], q)
			estAtkRefused(t, name, r, http.StatusUnauthorized)
			if strings.Contains(string(r.body), t1.ID) {
				t.Errorf("%s: the answer names the real token ID: %s", name, truncateBody(r.body))
			}
		}
	})
	run("credentials/another credential as the password", func(t *testing.T) {
		jwt, err := authority.SignJWT(jwkKey, "", nil, map[string]any{"sub": "dev1.example", "sans": []string{"dev1.example"},
			"iat": time.Now().Unix(), "nbf": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(),
			"aud": "https://" + n0.node.APIAddr() + "/v1/sign", "jti": "est-attack-1"})
		if err != nil {
			t.Fatal(err)
		}
		for name, auth := range map[string]string{
			"the admin token, with T1's ID":       estAtkBasic(t1.ID, c.admin),
			"the admin token, user admin":         estAtkBasic("admin", c.admin),
			"a jwk provisioner's JWT, with an ID": estAtkBasic(t1.ID, jwt),
			"a jwk provisioner's JWT, user jwk":   estAtkBasic("jwkprov", jwt),
			"the join secret":                     estAtkBasic(t1.ID, c.secret),
			"a made-up enrollment token":          estAtkBasic(t1.ID, t1.Token[:len(t1.Token)-4]+"AAAA"),
		} {
			q := good(t1CSR)
			q.auth = auth
			estAtkRefused(t, name, estAtkDo(t, c, nodes[len(name)%3], q), http.StatusUnauthorized)
		}
		// A JWT, or the admin token, on a labelled path too.
		q := good(t1CSR)
		q.auth, q.path = estAtkBasic("jwkprov", jwt), "/.well-known/est/jwkprov/simpleenroll"
		estAtkRefused(t, "a JWT on the jwk provisioner's path", estAtkDo(t, c, nodes[1], q), http.StatusUnauthorized, http.StatusNotFound)
	})
	run("credentials/two Authorization headers", func(t *testing.T) {
		// A wrong one first and T1's second: refused (a proxy that reads
		// the last one would let it through; the node must not).
		q := good(t1CSR)
		q.auth, q.auth2 = estAtkBasic("nope", "qcat_nope"), estAtkBasic(t1.ID, t1.Token)
		estAtkRefused(t, "wrong, then right", estAtkDo(t, c, nodes[1], q), http.StatusUnauthorized, http.StatusBadRequest)
		// The right one first, a wrong one second, with a token of its
		// own: net/http reads the first; recorded, not judged.
		tok := estAtkMint(t, c, n0, "", "1h", "dup.example")
		q = estAtkReq{method: "POST", path: enroll, auth: estAtkBasic(tok.ID, tok.Token), auth2: estAtkBasic("nope", "nope"), ctype: pkcs10,
			body: estAtkB64(estAtkCSR(t, newKey(t), "dup.example", "dup.example"))}
		r := estAtkDo(t, c, nodes[2], q)
		if r.status >= 500 {
			t.Errorf("right, then wrong: %d %s", r.status, r.body)
		}
		t.Logf("two Authorization headers, the right one first: %d", r.status)
		if r.status == http.StatusOK {
			extraCerts++
		}
	})
	run("credentials/huge Authorization header", func(t *testing.T) {
		q := good(t1CSR)
		q.auth = estAtkBasic(strings.Repeat("u", 30<<10), t1.Token)
		estAtkRefused(t, "30 KiB user name", estAtkDo(t, c, nodes[2], q), http.StatusUnauthorized)
		q.auth = "Basic " + strings.Repeat("QUFB", 12<<10) // 48 KiB of base64
		estAtkRefused(t, "48 KiB of base64", estAtkDo(t, c, nodes[0], q), http.StatusUnauthorized)
		// Beyond the server's header limit net/http answers itself (431,
		// not JSON): what matters is that nothing else happens.
		q.auth = "Basic " + strings.Repeat("QUFB", 40<<10)
		if r, err := estAtkSend(c, nodes[1], q); err == nil && r.status != http.StatusRequestHeaderFieldsTooLarge && (r.status < 400 || r.status >= 500) {
			t.Errorf("160 KiB header: %d %s", r.status, truncateBody(r.body))
		}
	})

	// --------------------------------------------------- wrong provisioner
	run("provisioner/a token on another provisioner's path", func(t *testing.T) {
		for _, label := range []string{"routers", "phones"} {
			q := good(t1CSR)
			q.path = "/.well-known/est/" + label + "/simpleenroll"
			estAtkRefused(t, "default token on "+label, estAtkDo(t, c, nodes[1], q), http.StatusForbidden)
		}
		rCSR := estAtkB64(estAtkCSR(t, newKey(t), "r1.routers.example", "r1.routers.example"))
		q := estAtkReq{method: "POST", path: "/.well-known/est/phones/simpleenroll", auth: estAtkBasic(tRouters.ID, tRouters.Token), ctype: pkcs10, body: rCSR}
		estAtkRefused(t, "routers token on phones", estAtkDo(t, c, nodes[2], q), http.StatusForbidden)
		q.path = "/.well-known/est/default/simpleenroll"
		estAtkRefused(t, "routers token on default", estAtkDo(t, c, nodes[0], q), http.StatusForbidden)
	})
	run("provisioner/labels of no EST provisioner", func(t *testing.T) {
		for _, label := range []string{"acmeprov", "jwkprov", "nosuch", "DEFAULT", "default.", "%2e%2e", "a%2Fb", "default%2Fsimpleenroll",
			"%00", "%ff%fe", strings.Repeat("x", 4000), "..%2F..%2Fv1%2Fsign"} {
			q := good(t1CSR)
			q.path = "/.well-known/est/" + label + "/simpleenroll"
			check := func(what string, r reply) {
				t.Helper()
				if r.status >= 300 && r.status < 400 {
					t.Logf("%s: %d to %s (net/http cleans the path)", what, r.status, r.header.Get("Location"))
					return
				}
				estAtkRefused(t, what, r, http.StatusNotFound, http.StatusBadRequest)
				if len(r.body) > 1024 {
					t.Logf("%s: the %d-byte answer echoes the label", what, len(r.body))
				}
			}
			check("simpleenroll of label "+estAtkTrunc(label), estAtkDo(t, c, nodes[len(label)%3], q))
			for _, what := range []string{"cacerts", "csrattrs"} {
				check(what+" of label "+estAtkTrunc(label), estAtkDo(t, c, nodes[1], estAtkReq{method: "GET", path: "/.well-known/est/" + label + "/" + what}))
			}
		}
	})
	run("provisioner/unauthenticated, a non-EST provisioner answers as no provisioner", func(t *testing.T) {
		// ACME answers "no ACME directory named x" alike for a provisioner
		// of another kind and for none; EST should not tell an anonymous
		// client which provisioners exist, nor their kinds, either.
		none := estAtkDo(t, c, nodes[0], estAtkReq{method: "GET", path: "/.well-known/est/nosuch-prov/csrattrs"})
		for _, label := range []string{"jwkprov", "acmeprov"} {
			r := estAtkDo(t, c, nodes[0], estAtkReq{method: "GET", path: "/.well-known/est/" + label + "/csrattrs"})
			estAtkRefused(t, label, r, http.StatusNotFound)
			if r.status != none.status || r.errorCode() != none.errorCode() || strings.Contains(string(r.body), "kind") {
				t.Errorf("GET /.well-known/est/%s/csrattrs without credentials tells a %s provisioner from none:\n  %s: %d %s\n  nosuch-prov: %d %s",
					label, label, label, r.status, strings.TrimSpace(string(r.body)), none.status, strings.TrimSpace(string(none.body)))
			}
		}
	})

	// ------------------------------------------------------------- CSRs
	run("csr/names and keys the token does not allow", func(t *testing.T) {
		p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		broken := estAtkCSR(t, newKey(t), "dev1.example", "dev1.example")
		broken[len(broken)-5] ^= 0x55
		otherKeySig := func() []byte {
			// The request names one key and is signed by another.
			der := estAtkCSR(t, newKey(t), "dev1.example", "dev1.example")
			csr, _ := x509.ParseCertificateRequest(der)
			other := estAtkCSR(t, newKey(t), "dev1.example", "dev1.example")
			ocsr, _ := x509.ParseCertificateRequest(other)
			return bytes.Replace(der, csr.RawSubjectPublicKeyInfo, ocsr.RawSubjectPublicKeyInfo, 1)
		}()
		cases := map[string][]byte{
			"another name":            estAtkCSR(t, newKey(t), "other.example", "other.example"),
			"an extra SAN":            estAtkCSR(t, newKey(t), "dev1.example", "dev1.example", "evil.example"),
			"a wildcard":              estAtkCSR(t, newKey(t), "", "*.dev1.example"),
			"the name and a wildcard": estAtkCSR(t, newKey(t), "dev1.example", "dev1.example", "*.dev1.example"),
			"an IP":                   estAtkCSR(t, newKey(t), "dev1.example", "dev1.example", "127.0.0.1"),
			"a URI":                   estAtkCSR(t, newKey(t), "dev1.example", "dev1.example", "spiffe://dev1.example/admin"),
			"an email":                estAtkCSR(t, newKey(t), "dev1.example", "dev1.example", "root@dev1.example"),
			"CN not in the SANs":      estAtkCSR(t, newKey(t), "evil.example", "dev1.example"),
			"CN free text":            estAtkCSR(t, newKey(t), "Quorum Root CA", "dev1.example"),
			"no name at all":          estAtkCSR(t, newKey(t), ""),
			"name with trailing junk": estAtkCSR(t, newKey(t), "", "dev1.example.evil.example"),
			"P-521 key":               estAtkCSR(t, p521, "dev1.example", "dev1.example"),
			"RSA-1024 key":            estAtkCSR(t, rsa1024, "dev1.example", "dev1.example"),
			"broken signature":        broken,
			"signed by another key":   otherKeySig,
			"a CSR and trailing data": append(estAtkCSR(t, newKey(t), "dev1.example", "dev1.example"), 0, 0, 0),
			"two CSRs":                append(estAtkCSR(t, newKey(t), "dev1.example", "dev1.example"), estAtkCSR(t, newKey(t), "evil.example", "evil.example")...),
			"a certificate":           c.enrollHolder(n0, "somecert.example").cert.Raw,
		}
		before := estAtkCerts(t, c)
		for name, der := range cases {
			r := estAtkDo(t, c, nodes[len(name)%3], good(estAtkB64(der)))
			estAtkRefused(t, name, r, http.StatusBadRequest, http.StatusForbidden)
		}
		if after := estAtkCerts(t, c); after != before {
			t.Errorf("certificates: %d -> %d", before, after)
		}
	})
	run("body/not base64 DER, empty, oversized, chunked", func(t *testing.T) {
		der := estAtkCSR(t, t1Key, "dev1.example", "dev1.example")
		pemCSR := newCSR(t, t1Key, "dev1.example")
		cases := map[string]estAtkReq{
			"raw DER":                 good(der),
			"PEM":                     good(pemCSR),
			"base64 of PEM":           good([]byte(base64.StdEncoding.EncodeToString(pemCSR))),
			"base64url":               good([]byte(base64.RawURLEncoding.EncodeToString(der) + "-_")),
			"base64 then junk":        good(append(estAtkB64(der), "!!!"...)),
			"empty":                   good([]byte{}),
			"whitespace only":         good([]byte(" \r\n\t\r\n")),
			"over 64 KiB":             good(estAtkB64(append(der, make([]byte, 70<<10)...))),
			"over 64 KiB of newlines": good(append(bytes.Repeat([]byte("\n"), 65<<10), estAtkB64(der)...)),
			"chunked, over 64 KiB":    func() estAtkReq { q := good(bytes.Repeat([]byte("QUFB"), 20<<10)); q.chunked = true; return q }(),
			"JSON as the API takes":   good([]byte(`{"csr":"` + strings.ReplaceAll(string(pemCSR), "\n", `\n`) + `","token":"` + t1.Token + `"}`)),
			"base64 of base64":        good([]byte(base64.StdEncoding.EncodeToString(estAtkB64(der)))),
		}
		for name, q := range cases {
			r, err := estAtkSend(c, nodes[len(name)%3], q)
			if err != nil {
				t.Logf("%s: the server closed the connection (%v)", name, err)
				continue
			}
			estAtkRefused(t, name, r, http.StatusBadRequest, http.StatusRequestEntityTooLarge)
		}
	})
	run("body/content types", func(t *testing.T) {
		for _, ct := range []string{"", "application/json", "text/plain", "application/pkcs10x", "application/x-pkcs10",
			"application/pkcs7-mime", "multipart/form-data; boundary=x", "application/pkcs10, application/json", strings.Repeat("a", 5000)} {
			q := good(t1CSR)
			q.ctype = ct
			r := estAtkDo(t, c, nodes[len(ct)%3], q)
			estAtkRefused(t, "content type "+estAtkTrunc(fmt.Sprintf("%q", ct)), r, http.StatusBadRequest, http.StatusUnsupportedMediaType)
			if len(r.body) > 1024 {
				t.Errorf("content type %s: the answer echoes it (%d bytes)", estAtkTrunc(ct), len(r.body))
			}
		}
	})
	run("methods and paths", func(t *testing.T) {
		type mp struct{ method, path string }
		for _, x := range []mp{
			{"GET", enroll}, {"PUT", enroll}, {"DELETE", enroll}, {"PATCH", enroll}, {"OPTIONS", enroll},
			{"GET", reenroll}, {"PUT", reenroll},
			{"POST", "/.well-known/est/cacerts"}, {"PUT", "/.well-known/est/cacerts"}, {"DELETE", "/.well-known/est/cacerts"},
			{"POST", "/.well-known/est/csrattrs"}, {"POST", "/.well-known/est/routers/cacerts"}, {"GET", "/.well-known/est/routers/simpleenroll"},
			{"GET", "/.well-known/est/serverkeygen"}, {"PUT", "/.well-known/est/routers/serverkeygen"},
			{"POST", "/.well-known/est/fullcmc"}, {"POST", "/.well-known/est/routers/fullcmc"},
			{"POST", "/.well-known/est/"}, {"GET", "/.well-known/est"}, {"POST", enroll + "/"}, {"POST", enroll + "x"},
			{"POST", "/.well-known/est/routers/phones/simpleenroll"}, {"POST", "/.well-known/est/SIMPLEENROLL"},
		} {
			q := good(t1CSR)
			q.method, q.path = x.method, x.path
			r := estAtkDo(t, c, nodes[len(x.path)%3], q)
			estAtkRefused(t, x.method+" "+x.path, r, http.StatusNotFound, http.StatusMethodNotAllowed)
		}
		// serverkeygen exists, for provisioners that let the CA make keys:
		// these do not.
		for _, path := range []string{"/.well-known/est/serverkeygen", "/.well-known/est/routers/serverkeygen"} {
			q := good(t1CSR)
			q.path = path
			estAtkRefused(t, "POST "+path, estAtkDo(t, c, nodes[0], q), http.StatusForbidden)
		}
		// HEAD: the same status, no body.
		q := good(t1CSR)
		q.method = "HEAD"
		if r := estAtkDo(t, c, nodes[0], q); r.status != http.StatusMethodNotAllowed {
			t.Errorf("HEAD simpleenroll: %d", r.status)
		}
		// Paths net/http cleans are redirected to the clean path (the
		// mux does so before any handler): nothing is served.
		for _, p := range []string{"/.well-known/est/../est/simpleenroll", "/.well-known/est//simpleenroll", "/.well-known/est/./simpleenroll",
			"/.well-known/est/routers/../simpleenroll", "/.well-known/est/x/../../../v1/sign"} {
			q := good(t1CSR)
			q.path = p
			r := estAtkDo(t, c, nodes[1], q)
			switch {
			case r.status >= 300 && r.status < 400:
				t.Logf("%s: %d to %s", p, r.status, r.header.Get("Location"))
			default:
				estAtkRefused(t, p, r, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusBadRequest)
			}
		}
	})
	run("reenroll does not take a token", func(t *testing.T) {
		q := good(t1CSR)
		q.path = reenroll
		estAtkRefused(t, "Basic token on simplereenroll", estAtkDo(t, c, nodes[2], q), http.StatusUnauthorized)
		q.path = "/.well-known/est/default/simplereenroll"
		estAtkRefused(t, "Basic token on default/simplereenroll", estAtkDo(t, c, nodes[0], q), http.StatusUnauthorized)
	})
	run("enroll does not take a certificate", func(t *testing.T) {
		h := c.enrollHolder(n0, "holder.example")
		q := estAtkReq{method: "POST", path: enroll, ctype: pkcs10, cert: h, body: estAtkB64(estAtkCSR(t, h.key, "holder.example", "holder.example"))}
		estAtkRefused(t, "client certificate, no Basic", estAtkDo(t, c, nodes[1], q), http.StatusUnauthorized)
	})

	// Everything above was refused: T1 is unspent, and nothing was issued
	// but the two certificates issued through /v1/sign for the tests.
	estAtkUnspent(t, c, t1)
	estAtkUnspent(t, c, tRouters)
	if n := estAtkCerts(t, c); n != certsAtStart+2+extraCerts {
		t.Errorf("certificates: %d at start, %d now (%d made on purpose)", certsAtStart, n, 2+extraCerts)
	}
	// T1 enrolls through a follower, lowercase "basic" (RFC 7617: the
	// scheme is case-insensitive); tRouters on its own path.
	q := good(t1CSR)
	q.auth = "basic " + base64.StdEncoding.EncodeToString([]byte(t1.ID+":"+t1.Token))
	h1 := &holder{key: t1Key, cert: estAtkCert(t, estAtkDo(t, c, nodes[2], q))}
	if h1.cert.Subject.CommonName != "dev1.example" || len(h1.cert.DNSNames) != 1 || h1.cert.DNSNames[0] != "dev1.example" {
		t.Fatalf("T1 issued %v %v", h1.cert.Subject, h1.cert.DNSNames)
	}
	rKey := newKey(t)
	hR := &holder{key: rKey, cert: estAtkCert(t, estAtkDo(t, c, nodes[1], estAtkReq{method: "POST", path: "/.well-known/est/routers/simpleenroll",
		auth: estAtkBasic(tRouters.ID, tRouters.Token), ctype: pkcs10, body: estAtkB64(estAtkCSR(t, rKey, "r1.routers.example", "r1.routers.example"))}))}

	// ------------------------------------------------------ reenrollment
	run("reenroll/certificates that must not renew", func(t *testing.T) {
		newCSRFor := func(names ...string) []byte { return estAtkB64(estAtkCSR(t, newKey(t), names[0], names...)) }
		admin, _ := c.certAdmin(n0, nil, "mallory", "operator")
		nodeTLS, err := tls.LoadX509KeyPair(n0.cfg.TLSCertFile, n0.cfg.TLSKeyFile)
		if err != nil {
			t.Fatal(err)
		}
		nodeLeaf, _ := x509.ParseCertificate(nodeTLS.Certificate[0])
		nodeHolder := &holder{key: nodeTLS.PrivateKey.(crypto.Signer), cert: nodeLeaf}
		foreign := otherCAHolder(t, h1.cert)
		selfSigned := func() *holder {
			k := newKey(t)
			tmpl := &x509.Certificate{SerialNumber: h1.cert.SerialNumber, Subject: h1.cert.Subject, DNSNames: h1.cert.DNSNames,
				NotBefore: h1.cert.NotBefore, NotAfter: h1.cert.NotAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
			if err != nil {
				t.Fatal(err)
			}
			cert, _ := x509.ParseCertificate(der)
			return &holder{key: k, cert: cert}
		}()
		p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
		broken := estAtkCSR(t, newKey(t), "dev1.example", "dev1.example")
		broken[len(broken)-5] ^= 0x55
		before := estAtkCerts(t, c)
		type rc struct {
			name     string
			path     string
			cert     *holder
			body     []byte
			statuses []int
		}
		for _, x := range []rc{
			{"no certificate", reenroll, nil, newCSRFor("dev1.example"), []int{401}},
			{"an admin's certificate", reenroll, admin, estAtkB64(estAtkCSR(t, admin.key, "", "x.example")), []int{403}},
			{"an admin's certificate, its own names", reenroll, admin, estAtkB64(csrDER(t, admin.key, admin.cert.Subject.CommonName, admin.cert.DNSNames...)), []int{403}},
			{"a node's API certificate", reenroll, nodeHolder, estAtkB64(estAtkCSR(t, newKey(t), "", "127.0.0.1", "localhost")), []int{403, 404}},
			{"a foreign CA's certificate with a real serial", reenroll, foreign, newCSRFor("dev1.example"), []int{403, 404}},
			{"a self-signed copy of a real certificate", reenroll, selfSigned, newCSRFor("dev1.example"), []int{403, 404}},
			{"another provisioner's path", "/.well-known/est/routers/simplereenroll", h1, newCSRFor("dev1.example"), []int{403}},
			{"routers' certificate on phones' path", "/.well-known/est/phones/simplereenroll", hR, newCSRFor("r1.routers.example"), []int{403}},
			{"an acme provisioner's path", "/.well-known/est/acmeprov/simplereenroll", h1, newCSRFor("dev1.example"), []int{404}},
			{"a jwk provisioner's path", "/.well-known/est/jwkprov/simplereenroll", h1, newCSRFor("dev1.example"), []int{404}},
			{"an unknown path", "/.well-known/est/nosuch/simplereenroll", h1, newCSRFor("dev1.example"), []int{400, 404}},
			{"other names", reenroll, h1, newCSRFor("other.example"), []int{403}},
			{"an extra name", reenroll, h1, newCSRFor("dev1.example", "evil.example"), []int{403}},
			{"an extra IP", reenroll, h1, newCSRFor("dev1.example", "127.0.0.1"), []int{403}},
			{"the name twice and an extra one", reenroll, h1, estAtkB64(estAtkCSR(t, newKey(t), "dev1.example", "dev1.example", "dev1.example", "evil.example")), []int{403}},
			{"another CN", reenroll, h1, estAtkB64(estAtkCSR(t, newKey(t), "evil.example", "dev1.example")), []int{403}},
			{"a wildcard", reenroll, h1, estAtkB64(estAtkCSR(t, newKey(t), "", "*.dev1.example")), []int{403}},
			{"P-521", reenroll, h1, estAtkB64(estAtkCSR(t, p521, "dev1.example", "dev1.example")), []int{400, 403}},
			{"RSA-1024", reenroll, h1, estAtkB64(estAtkCSR(t, rsa1024, "dev1.example", "dev1.example")), []int{400, 403}},
			{"a broken CSR signature", reenroll, h1, estAtkB64(broken), []int{400}},
			{"no CSR", reenroll, h1, []byte{}, []int{400}},
			{"a CSR not base64", reenroll, h1, estAtkCSR(t, newKey(t), "dev1.example", "dev1.example"), []int{400}},
		} {
			q := estAtkReq{method: "POST", path: x.path, ctype: pkcs10, body: x.body, cert: x.cert}
			estAtkRefused(t, x.name, estAtkDo(t, c, nodes[len(x.name)%3], q), x.statuses...)
		}
		q := estAtkReq{method: "POST", path: reenroll, ctype: "application/json", body: newCSRFor("dev1.example"), cert: h1}
		estAtkRefused(t, "reenroll as application/json", estAtkDo(t, c, nodes[0], q), http.StatusBadRequest)
		if after := estAtkCerts(t, c); after != before {
			t.Errorf("certificates: %d -> %d", before, after)
		}
	})
	run("reenroll/revoked, replaced, and the replaced one's retry", func(t *testing.T) {
		// Revoked by an admin.
		hv := c.enrollHolder(n0, "revoked.example")
		if r := c.do(n0, "POST", "/v1/admin/certs/"+hv.s.Serial+"/revoke", map[string]string{"reason": "keyCompromise"}, c.admin); r.status >= 300 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		for _, tn := range nodes {
			q := estAtkReq{method: "POST", path: reenroll, ctype: pkcs10, cert: hv, body: estAtkB64(estAtkCSR(t, newKey(t), "revoked.example", "revoked.example"))}
			estAtkRefused(t, "revoked on "+tn.cfg.NodeName, estAtkDo(t, c, tn, q), http.StatusForbidden)
		}
		// Renewed with a new key (routers' certificate on its own path):
		// a retry with the same key gets the same successor; another key,
		// whoever holds the old certificate, gets nothing.
		before := estAtkCerts(t, c)
		k2 := newKey(t)
		csr2 := estAtkB64(estAtkCSR(t, k2, "r1.routers.example", "r1.routers.example"))
		next := estAtkCert(t, estAtkDo(t, c, nodes[2], estAtkReq{method: "POST", path: "/.well-known/est/routers/simplereenroll", ctype: pkcs10, cert: hR, body: csr2}))
		again := estAtkCert(t, estAtkDo(t, c, nodes[0], estAtkReq{method: "POST", path: "/.well-known/est/routers/simplereenroll", ctype: pkcs10, cert: hR, body: csr2}))
		if again.SerialNumber.Cmp(next.SerialNumber) != 0 {
			t.Errorf("a retry of the same reenrollment issued another certificate")
		}
		for i, tn := range nodes {
			q := estAtkReq{method: "POST", path: reenroll, ctype: pkcs10, cert: hR, body: estAtkB64(estAtkCSR(t, newKey(t), "r1.routers.example", "r1.routers.example"))}
			estAtkRefused(t, fmt.Sprintf("replaced certificate, new key #%d", i), estAtkDo(t, c, tn, q), http.StatusConflict)
		}
		if after := estAtkCerts(t, c); after != before+1 {
			t.Errorf("certificates: %d -> %d, want one more", before, after)
		}
	})
	run("race/one token through three nodes, six keys", func(t *testing.T) {
		tok := estAtkMint(t, c, n0, "", "1h", "race.example")
		before := estAtkCerts(t, c)
		keys := make([]crypto.Signer, 6)
		bodies := make([][]byte, 6)
		for i := range keys {
			keys[i] = newKey(t)
			bodies[i] = estAtkB64(estAtkCSR(t, keys[i], "race.example", "race.example"))
		}
		var wg sync.WaitGroup
		results := make([]reply, 6)
		errs := make([]error, 6)
		start := make(chan struct{})
		for i := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i], errs[i] = estAtkSend(c, nodes[i%3], estAtkReq{method: "POST", path: enroll, auth: estAtkBasic(tok.ID, tok.Token), ctype: pkcs10, body: bodies[i]})
			}()
		}
		close(start)
		wg.Wait()
		won := -1
		for i, r := range results {
			if errs[i] != nil {
				t.Fatalf("racer %d: %v", i, errs[i])
			}
			switch r.status {
			case http.StatusOK:
				if won != -1 {
					t.Errorf("racers %d and %d both enrolled with one token", won, i)
				}
				won = i
			default:
				estAtkRefused(t, fmt.Sprintf("racer %d", i), r, http.StatusConflict)
			}
		}
		if won == -1 {
			t.Fatal("no racer enrolled")
		}
		if after := estAtkCerts(t, c); after != before+1 {
			t.Errorf("certificates: %d -> %d, want exactly one more", before, after)
		}
		r := c.do(n0, "GET", "/v1/admin/certs?limit=100&san=race.example", nil, c.admin)
		var out struct {
			Certs []struct {
				Serial  string `json:"serial"`
				TokenID string `json:"token_id"`
			}
		}
		r.decode(t, &out)
		if len(out.Certs) != 1 || out.Certs[0].TokenID != tok.ID {
			t.Errorf("certificates for race.example: %s", r.body)
		}
		// The winner asks again through another node: the same certificate.
		first := estAtkCert(t, results[won])
		again := estAtkCert(t, estAtkDo(t, c, nodes[(won+1)%3], estAtkReq{method: "POST", path: enroll, auth: estAtkBasic(tok.ID, tok.Token), ctype: pkcs10, body: bodies[won]}))
		if again.SerialNumber.Cmp(first.SerialNumber) != 0 {
			t.Errorf("the winner's retry got another certificate")
		}
		// The winner's retry with the right secret but another ID, or on
		// another provisioner's path: not the certificate.
		q := estAtkReq{method: "POST", path: enroll, auth: estAtkBasic(t1.ID, tok.Token), ctype: pkcs10, body: bodies[won]}
		estAtkRefused(t, "retry with another ID", estAtkDo(t, c, nodes[0], q), http.StatusUnauthorized, http.StatusConflict)
		q.auth, q.path = estAtkBasic(tok.ID, tok.Token), "/.well-known/est/routers/simpleenroll"
		estAtkRefused(t, "retry on routers' path", estAtkDo(t, c, nodes[1], q), http.StatusForbidden, http.StatusConflict)
	})
	run("tokens/revoked", func(t *testing.T) {
		tok := estAtkMint(t, c, n0, "", "1h", "revokedtok.example")
		if r := c.do(nodes[1], "DELETE", "/v1/admin/tokens/"+tok.ID, nil, c.admin); r.status >= 300 {
			t.Fatalf("revoke token: %d %s", r.status, r.body)
		}
		before := estAtkCerts(t, c)
		for _, tn := range nodes {
			q := estAtkReq{method: "POST", path: enroll, auth: estAtkBasic(tok.ID, tok.Token), ctype: pkcs10, body: estAtkB64(estAtkCSR(t, newKey(t), "revokedtok.example", "revokedtok.example"))}
			estAtkRefused(t, "revoked token on "+tn.cfg.NodeName, estAtkDo(t, c, tn, q), http.StatusUnauthorized, http.StatusForbidden)
		}
		if after := estAtkCerts(t, c); after != before {
			t.Errorf("certificates: %d -> %d", before, after)
		}
	})

	// Last, as the clock moves: an expired token, an expired certificate.
	run("expiry/token and certificate", func(t *testing.T) {
		tok := estAtkMint(t, c, n0, "", "1m", "expired.example")
		hx := c.enrollHolder(n0, "expiredcert.example")
		before := estAtkCerts(t, c)
		c.clock.Advance(2 * time.Minute)
		q := estAtkReq{method: "POST", path: enroll, auth: estAtkBasic(tok.ID, tok.Token), ctype: pkcs10, body: estAtkB64(estAtkCSR(t, newKey(t), "expired.example", "expired.example"))}
		r := estAtkDo(t, c, nodes[2], q)
		estAtkRefused(t, "expired token", r, http.StatusUnauthorized)
		if r.errorCode() != "token_expired" {
			t.Errorf("expired token: %s", r.body)
		}
		c.clock.Advance(25 * time.Hour)
		q = estAtkReq{method: "POST", path: reenroll, ctype: pkcs10, cert: hx, body: estAtkB64(estAtkCSR(t, newKey(t), "expiredcert.example", "expiredcert.example"))}
		r = estAtkDo(t, c, nodes[1], q)
		estAtkRefused(t, "expired certificate", r, http.StatusForbidden)
		if r.errorCode() != "certificate_expired" {
			t.Errorf("expired certificate: %s", r.body)
		}
		if after := estAtkCerts(t, c); after != before {
			t.Errorf("certificates: %d -> %d", before, after)
		}
	})
}

func estAtkTrunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

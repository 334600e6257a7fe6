package node

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/internal/testwait"
)

// postOCSP sends a DER OCSP request to tn's plain-HTTP responder.
func postOCSP(t *testing.T, tn *testNode, req []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post("http://"+tn.node.HTTPAddr()+"/v1/ocsp", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// One source flooding the unauthenticated responder is turned away with
// 429, Retry-After and the OCSP "tryLater" answer, by default.
func TestOCSPIsRateLimitedPerSource(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	h := c.enrollHolder(n, "flood.example")
	req, err := ocsp.CreateRequest(h.cert, h.chain[0], &ocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	var limited *http.Response
	var body []byte
	for i := 0; i < 5000 && limited == nil; i++ {
		resp, b := postOCSP(t, n, req)
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			limited, body = resp, b
		default:
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
		}
	}
	if limited == nil {
		t.Fatal("5,000 OCSP requests from one address in a burst were all answered")
	}
	if limited.Header.Get("Retry-After") == "" || !bytes.Equal(body, ocsp.TryLaterErrorResponse) ||
		limited.Header.Get("Content-Type") != "application/ocsp-response" {
		t.Fatalf("refusal: Retry-After %q, Content-Type %q, body %x", limited.Header.Get("Retry-After"), limited.Header.Get("Content-Type"), body)
	}
}

func TestOCSPConfig(t *testing.T) {
	c, err := Load("../deploy/node.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if c.OCSP != (OCSPConfig{Rate: 100, Burst: 1000, CacheBytes: 64 << 20}) || !strings.HasPrefix(c.Authorities[0].OCSPResponderKey, "awskms:") {
		t.Errorf("ocsp %+v, responder key %q", c.OCSP, c.Authorities[0].OCSPResponderKey)
	}
	src := baseConfig + `cluster {
  bootstrap = true
  join_secret = "0123456789abcdef"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}
`
	if _, err := Parse("x.hcl", []byte(src+"ocsp {\n  rate = -1\n}\n")); err == nil || !strings.Contains(err.Error(), "ocsp") {
		t.Errorf("negative rate: %v", err)
	}
	soft := src + `authority "default" {
  root_file = "r"
  chain_file = "c"
  key = "awskms:alias/i"
  ocsp_responder_key = "softkey:/k.pem"
}
`
	if _, err := Parse("x.hcl", []byte(soft)); err == nil || !strings.Contains(err.Error(), "softkey") {
		t.Errorf("softkey responder without allow_insecure_soft_signer: %v", err)
	}
}

// ocspFrom posts an OCSP request to url from a given local address.
func ocspFrom(t *testing.T, local, url string, req []byte) (*http.Response, []byte) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post(url, "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// The budget is per source address, shared by both listeners and both
// forms of request, and set in the config.
func TestOCSPRateLimitIsPerSourceAndConfigured(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.configure = func(cfg *Config) { cfg.OCSP = OCSPConfig{Rate: 0.01, Burst: 3} }
	})
	n := c.nodes[0]
	h := c.enrollHolder(n, "budget.example")
	req, err := ocsp.CreateRequest(h.cert, h.chain[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	plain := "http://" + n.node.HTTPAddr() + "/v1/ocsp"
	for i := range 3 {
		if resp, body := ocspFrom(t, "127.0.0.1", plain, req); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d of a burst of 3: %d %s", i+1, resp.StatusCode, body)
		}
	}
	check := func(what string, resp *http.Response, body []byte) {
		t.Helper()
		if resp.StatusCode != http.StatusTooManyRequests || !bytes.Equal(body, ocsp.TryLaterErrorResponse) ||
			resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %q %x", what, resp.StatusCode, resp.Header.Get("Cache-Control"), body)
		}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("%s: Retry-After %q", what, resp.Header.Get("Retry-After"))
		}
	}
	resp, body := ocspFrom(t, "127.0.0.1", plain, req)
	check("4th POST", resp, body)
	// The same source on the HTTPS API, and with GET: the same budget.
	resp, body = ocspFrom(t, "127.0.0.1", "https://"+n.node.APIAddr()+"/v1/ocsp", req)
	check("HTTPS", resp, body)
	get, err := http.Get(plain + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(req)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(get.Body)
	get.Body.Close()
	check("GET", get, body)
	// Another source has its own.
	resp, body = ocspFrom(t, "127.0.0.2", plain, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("another source: %d %x", resp.StatusCode, body)
	}
	if r, err := ocsp.ParseResponseForCert(body, h.cert, h.chain[0]); err != nil || r.Status != ocsp.Good {
		t.Fatalf("another source: %v", err)
	}
}

// An operator gives the authority a delegated responder through one node;
// when the call returns every node signs with it; openssl verifies its
// answers against the root and against the responder certificate; the
// leader renews it; removed, the issuing key signs again.
func TestDelegatedOCSPResponderAcrossTheCluster(t *testing.T) {
	requireOpenSSL(t)
	c := newTestCluster(t, 3)
	f := c.Followers()
	good := c.enrollHolder(c.nodes[0], "good.example")
	bad := c.enrollHolder(c.nodes[0], "bad.example")
	if r := c.do(c.nodes[0], "POST", "/v1/revoke", map[string]string{"serial": bad.s.Serial, "reason": "keyCompromise"}, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	// Serials never issued: the unsigned "unauthorized", on a follower
	// too, and not one signature for them.
	signs := signatures(t, c, f[1])
	for i := range 300 {
		unknown, _ := ocsp.CreateRequest(&x509.Certificate{SerialNumber: big.NewInt(int64(424242 + i))}, good.chain[0], nil)
		if resp, body := postOCSP(t, f[1], unknown); resp.StatusCode != http.StatusOK || !bytes.Equal(body, ocsp.UnauthorizedErrorResponse) {
			t.Fatalf("unknown serial: %d %x", resp.StatusCode, body)
		}
	}
	if n := signatures(t, c, f[1]) - signs; n != 0 {
		t.Fatalf("300 requests for unknown serials: %v signatures", n)
	}
	// And one for fifty requests about a certificate.
	for range 50 {
		if st := c.ocspStatus(f[1], good); st.Status != ocsp.Good {
			t.Fatalf("status %d", st.Status)
		}
	}
	if n := signatures(t, c, f[1]) - signs; n != 1 {
		t.Fatalf("50 requests for one certificate: %v signatures", n)
	}

	keyURI := "softkey:" + filepath.Join(c.dir, "ocsp-responder.key")
	r := c.do(f[0], "PUT", "/v1/admin/authorities/default/ocsp-responder", map[string]any{"key": keyURI, "create_keys": true, "ttl": "48h"}, c.admin)
	if r.status != http.StatusOK {
		t.Fatalf("set responder: %d %s", r.status, r.body)
	}
	var out struct {
		KeyURI       string `json:"key_uri"`
		Version      uint64
		Certificates []struct{ Issuer, Certificate string }
	}
	r.decode(t, &out)
	if out.KeyURI != keyURI || out.Version != 1 || len(out.Certificates) != 1 {
		t.Fatalf("responder %s", r.body)
	}
	rc := parsePEMCert(t, out.Certificates[0].Certificate)
	// At once on every node.
	for _, tn := range c.nodes {
		st := c.ocspStatus(tn, good)
		if st.Status != ocsp.Good || st.Certificate == nil || !st.Certificate.Equal(rc) {
			t.Fatalf("%s right after the call: status %d, responder certificate %v", tn.cfg.NodeName, st.Status, st.Certificate != nil)
		}
	}

	dir := t.TempDir()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rootPEM, _ := os.ReadFile(c.pki.RootFile)
	write("root.pem", rootPEM)
	write("inter.pem", []byte(good.s.Chain[0]))
	write("good.pem", []byte(good.s.Certificate))
	write("bad.pem", []byte(bad.s.Certificate))
	write("responder.pem", []byte(out.Certificates[0].Certificate))
	ocspURL := "http://" + f[1].node.HTTPAddr() + "/v1/ocsp"
	for _, trust := range [][]string{{"-CAfile", "root.pem"}, {"-VAfile", "responder.pem"}} {
		for cert, want := range map[string]string{"good.pem": "good", "bad.pem": "revoked"} {
			args := append([]string{"ocsp", "-issuer", "inter.pem", "-cert", cert, "-url", ocspURL, "-no_nonce", "-resp_text"}, trust...)
			out, err := openssl(t, dir, args...)
			if err != nil || !strings.Contains(out, "Response verify OK") || !strings.Contains(out, cert+": "+want) ||
				!strings.Contains(out, "OCSP Signing") || !strings.Contains(out, "OCSP No Check") {
				t.Errorf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}

	// The leader renews the certificate a third of its life before its
	// end (a new leader at once).
	c.clock.Advance(36 * time.Hour)
	target := c.Followers()[0]
	if r := c.do(target, "POST", "/v1/admin/raft/transfer-leadership", map[string]string{"to": target.cfg.NodeName}, c.admin); r.status != http.StatusNoContent {
		t.Fatalf("transfer: %d %s", r.status, r.body)
	}
	testwait.For(t, 20*time.Second, "the responder certificate renewed on every node", func() bool {
		for _, tn := range c.nodes {
			r, err := tn.node.FSM().OCSPResponder("default")
			if err != nil || r.Version < 2 {
				return false
			}
		}
		return true
	})
	renewed, _ := c.nodes[0].node.FSM().OCSPResponder("default")
	rc2, err := x509.ParseCertificate(renewed.Certs[0].DER)
	if err != nil || !rc2.NotAfter.After(rc.NotAfter) {
		t.Fatalf("renewed certificate until %v (was %s): %v", rc2.NotAfter, rc.NotAfter, err)
	}
	if st := c.ocspStatus(f[1], bad); st.Status != ocsp.Revoked || st.Certificate == nil || !st.Certificate.Equal(rc2) {
		t.Fatal("not answered with the renewed responder certificate")
	}

	if r := c.do(f[1], "DELETE", "/v1/admin/authorities/default/ocsp-responder", nil, c.admin); r.status != http.StatusNoContent {
		t.Fatalf("remove responder: %d %s", r.status, r.body)
	}
	for _, tn := range c.nodes {
		if st := c.ocspStatus(tn, good); st.Certificate != nil || st.CheckSignatureFrom(good.chain[0]) != nil {
			t.Fatalf("%s after removal: not signed by the issuer", tn.cfg.NodeName)
		}
	}
	if r := c.do(f[1], "GET", "/v1/admin/authorities/default/ocsp-responder", nil, c.admin); r.status != http.StatusNotFound {
		t.Fatalf("responder after removal: %d %s", r.status, r.body)
	}
}

// signatures is how many signatures tn's keys have made.
func signatures(t *testing.T, c *testCluster, tn *testNode) float64 {
	t.Helper()
	r := c.do(tn, "GET", "/v1/metrics", nil, "")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, m := range families["quorumca_signer_duration_seconds"].GetMetric() {
		n += float64(m.GetHistogram().GetSampleCount())
	}
	return n
}

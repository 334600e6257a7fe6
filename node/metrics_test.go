package node

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"github.com/quorumca/quorumca/internal/testwait"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
)

// scrape reads tn's /v1/metrics on the API, with token if not "".
func (c *testCluster) scrape(tn *testNode, token string) map[string]*dto.MetricFamily {
	c.t.Helper()
	r := c.do(tn, "GET", "/v1/metrics", nil, token)
	if r.status != http.StatusOK {
		c.t.Fatalf("metrics: %d %s", r.status, r.body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		c.t.Fatalf("metrics do not parse as Prometheus text: %v", err)
	}
	return families
}

// The issuer's and the root's certificates and the stored CRL report the
// seconds they have left by the node's clock, and the CRL its number.
func TestMetricsCertAndCRLLifetimes(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	h := c.enrollHolder(n, "life.example")
	c.do(n, "POST", "/v1/revoke", map[string]string{"serial": h.s.Serial}, c.admin)
	crl := c.crlListing(n, h.chain[0], h.cert.SerialNumber)
	issuer, root := h.chain[0], c.pki.Root()
	near := func(got, want float64) bool { return math.Abs(got-want) < 60 }

	// An hour on: well before the leader re-signs the CRL (at half its life).
	for _, advance := range []time.Duration{0, time.Hour} {
		c.clock.Advance(advance)
		now := c.clock.Now()
		m := c.scrape(n, "")
		for _, tt := range []struct {
			name, issuer string
			want         float64
		}{
			{"quorumca_ca_cert_expiry_seconds", authority.IssuerID(issuer), issuer.NotAfter.Sub(now).Seconds()},
			{"quorumca_ca_cert_expiry_seconds", "root-" + authority.IssuerID(root), root.NotAfter.Sub(now).Seconds()},
			{"quorumca_crl_next_update_seconds", authority.IssuerID(issuer), crl.NextUpdate.Sub(now).Seconds()},
		} {
			labels := map[string]string{"authority": "default", "issuer": tt.issuer}
			if got := metricValue(t, m, tt.name, labels); !near(got, tt.want) {
				t.Errorf("after %s: %s%v = %v, want about %v", advance, tt.name, labels, got, tt.want)
			}
		}
		labels := map[string]string{"authority": "default", "issuer": authority.IssuerID(issuer)}
		if got := metricValue(t, m, "quorumca_crl_number", labels); got != float64(crl.Number.Int64()) {
			t.Errorf("quorumca_crl_number = %v, want %v", got, crl.Number)
		}
	}
}

// ocspRequestFor asks about each certificate of issuer (several: one
// request naming them all).
func ocspRequestFor(t *testing.T, issuer *x509.Certificate, certs ...*x509.Certificate) []byte {
	t.Helper()
	type request struct {
		TBS struct{ List []asn1.RawValue }
	}
	var all request
	for _, cert := range certs {
		der, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA256})
		if err != nil {
			t.Fatal(err)
		}
		var one request
		if _, err := asn1.Unmarshal(der, &one); err != nil {
			t.Fatal(err)
		}
		all.TBS.List = append(all.TBS.List, one.TBS.List...)
	}
	der, err := asn1.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Every OCSP answer is counted by status: each certificate of a signed
// answer (several in one, or one signed for a nonce), and the error
// answers once each, those to bytes that are no OCSP request too (they
// get malformedRequest, as OCSP clients read nothing else).
func TestMetricsOCSPResponsesByStatus(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.configure = func(cfg *Config) { cfg.OCSP = OCSPConfig{Rate: 0.01, Burst: 10} }
	})
	n := c.nodes[0]
	good, bad := c.enrollHolder(n, "good.example"), c.enrollHolder(n, "bad.example")
	c.do(n, "POST", "/v1/revoke", map[string]string{"serial": bad.s.Serial}, c.admin)
	never := *good.cert
	never.SerialNumber = big.NewInt(7)
	issuer := good.chain[0]

	for _, tt := range []struct {
		certs  []*x509.Certificate
		status int
	}{
		{[]*x509.Certificate{good.cert}, http.StatusOK},
		{[]*x509.Certificate{bad.cert}, http.StatusOK},
		{[]*x509.Certificate{good.cert, bad.cert, &never}, http.StatusOK},
		{[]*x509.Certificate{&never}, http.StatusOK},                       // unauthorized
		{[]*x509.Certificate{good.cert, good.cert}, http.StatusBadRequest}, // malformed
	} {
		if resp, body := postOCSP(t, n, ocspRequestFor(t, issuer, tt.certs...)); resp.StatusCode != tt.status {
			t.Fatalf("%d certificates: %d %x", len(tt.certs), resp.StatusCode, body)
		}
	}
	// A nonce: signed for this request, counted like any signed answer.
	nonced, _ := ocspWithNonce(t, ocspRequestFor(t, issuer, good.cert), 16)
	if resp, body := postOCSP(t, n, nonced); resp.StatusCode != http.StatusOK {
		t.Fatalf("nonce: %d %x", resp.StatusCode, body)
	}
	// Not an OCSP request (POST or GET, or a body too large): the OCSP
	// malformedRequest answer, counted as malformed.
	for name, send := range map[string]func() (*http.Response, []byte){
		"POST not DER":   func() (*http.Response, []byte) { return postOCSP(t, n, []byte("not DER")) },
		"POST too large": func() (*http.Response, []byte) { return postOCSP(t, n, make([]byte, 64<<10)) },
		"GET not DER":    func() (*http.Response, []byte) { return getOCSP(t, n, []byte("not DER")) },
	} {
		resp, body := send()
		if resp.StatusCode/100 != 4 || resp.StatusCode == http.StatusTooManyRequests || resp.Header.Get("Content-Type") != "application/ocsp-response" ||
			!bytes.Equal(body, ocsp.MalformedRequestErrorResponse) {
			t.Fatalf("%s: %d %q %q", name, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	answered := 0
	for {
		resp, body := postOCSP(t, n, ocspRequestFor(t, issuer, good.cert))
		if resp.StatusCode == http.StatusTooManyRequests {
			break
		}
		if resp.StatusCode != http.StatusOK || answered > 20 {
			t.Fatalf("until the budget runs out: %d %x", resp.StatusCode, body)
		}
		answered++
	}

	m := c.scrape(n, "")
	for status, want := range map[string]int{"good": 3 + answered, "revoked": 2, "unknown": 1,
		"unauthorized": 1, "malformed": 4, "tryLater": 1, "internalError": 0} {
		if got := metricValue(t, m, "quorumca_ocsp_responses_total", map[string]string{"status": status}); got != float64(want) {
			t.Errorf("quorumca_ocsp_responses_total{status=%q} = %v, want %d", status, got, want)
		}
	}
}

// With a metrics token, /v1/metrics (and /metrics) on the API and on the
// admin listener answer 401 in the JSON error form without it, and the
// token reaches neither the log nor the audit file.
func TestMetricsTokenRequired(t *testing.T) {
	const token, wrong = "metrics-token-0123456789abcdef", "metrics-token-0123456789abcdeX"
	var logs testwait.Buffer
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		file := filepath.Join(c.dir, "metrics.token")
		if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.adminListen, c.auditFiles = true, true
		c.configure = func(cfg *Config) {
			cfg.MetricsTokenFile = file
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	})
	n := c.nodes[0]
	get := func(url, auth string) (int, http.Header, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, body
	}
	for _, url := range []string{"https://" + n.node.APIAddr() + "/v1/metrics", "https://" + n.node.APIAddr() + "/metrics",
		"http://" + n.node.AdminAddr() + "/v1/metrics"} {
		for _, auth := range []string{"", "Bearer " + wrong, "Bearer " + token + "x", "Basic " + token} {
			status, h, body := get(url, auth)
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if status != http.StatusUnauthorized || json.Unmarshal(body, &e) != nil || e.Error.Code != "unauthorized" ||
				e.Error.Message == "" || h.Get("WWW-Authenticate") == "" {
				t.Errorf("%s with %q: %d %s", url, auth, status, body)
			}
			if bytes.Contains(body, []byte("quorumca_")) {
				t.Errorf("%s with %q: metrics in the refusal", url, auth)
			}
		}
		if status, _, body := get(url, "Bearer "+token); status != http.StatusOK || !bytes.Contains(body, []byte("quorumca_raft_state")) {
			t.Errorf("%s with the token: %d %.200s", url, status, body)
		}
	}
	c.Stop(n)
	audit, err := os.ReadFile(n.cfg.AuditFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "/v1/metrics") {
		t.Fatal("the refusals were not logged: the check below would prove nothing")
	}
	for where, text := range map[string]string{"log": logs.String(), "audit file": string(audit)} {
		for _, secret := range []string{token, wrong} {
			if strings.Contains(text, secret) {
				t.Errorf("the %s holds a metrics token", where)
			}
		}
	}
}

// The metrics block names the token file; a missing or short token stops
// the node, and neither error shows what the file holds.
func TestMetricsTokenConfig(t *testing.T) {
	c, err := Parse("t.hcl", []byte(baseConfig+`cluster {
  bootstrap = true
  join_secret = "0123456789abcdef"
  ca_key = "awskms:alias/c"
}
metrics { bearer_token_file = "/etc/quorumca/metrics.token" }`))
	if err != nil || c.MetricsTokenFile != "/etc/quorumca/metrics.token" {
		t.Fatalf("parsed %q, %v", c.MetricsTokenFile, err)
	}
	dir := t.TempDir()
	for _, tt := range []struct{ content, want string }{
		{"", "no such file"},
		{"short-secret\n", "at least 16 characters"},
		{"  a-long-enough-metrics-token \n", ""},
	} {
		c.MetricsTokenFile = filepath.Join(dir, "missing")
		if tt.content != "" {
			c.MetricsTokenFile = filepath.Join(dir, "token")
			if err := os.WriteFile(c.MetricsTokenFile, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		tok, err := c.metricsToken()
		switch {
		case tt.want == "" && (err != nil || tok != "a-long-enough-metrics-token"):
			t.Errorf("%q: %q, %v", tt.content, tok, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: %v, want %q", tt.content, err, tt.want)
		case err != nil && tt.content != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.content)):
			t.Errorf("the error shows the token: %v", err)
		}
	}
}

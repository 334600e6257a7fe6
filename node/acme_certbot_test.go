package node

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/internal/testwait"
)

// certbot (Debian's) against a three-node cluster behind HAProxy with a
// round-robin backend and no stickiness: HAProxy ends TLS and sends every
// request to the next node, so each step of certbot's conversation lands
// on another node than the one before.

func requireTool(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s is required by this test and is not installed (Debian: apt-get install %s)", tool, pkg)
	}
}

// startL7Balancer runs HAProxy on e.l7: TLS ends there with a certificate
// of the dev root, and each request goes to the next node (re-encrypted).
func (e *acmeEnv) startL7Balancer(t *testing.T) {
	t.Helper()
	requireTool(t, "haproxy", "haproxy")
	dir := t.TempDir()
	cert, key, err := e.c.pki.NodeTLS(filepath.Join(dir, "tls"), []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(cert)
	keyPEM, _ := os.ReadFile(key)
	bundle := filepath.Join(dir, "lb.pem")
	if err := os.WriteFile(bundle, append(certPEM, keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	var servers strings.Builder
	for _, tn := range e.c.nodes {
		fmt.Fprintf(&servers, "  server %s %s ssl verify required ca-file %s verifyhost localhost sni str(localhost)\n",
			tn.cfg.NodeName, tn.node.APIAddr(), e.c.pki.RootFile)
	}
	conf := fmt.Sprintf(`global
  maxconn 256
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-server-close
frontend acme
  bind %s ssl crt %s
  default_backend nodes
backend nodes
  balance roundrobin
%s`, e.l7, bundle, servers.String())
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("haproxy", "-db", "-f", cfgFile)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testwait.For(t, 10*time.Second, "HAProxy to answer", func() bool {
		resp, err := e.c.client.Get("https://" + e.l7 + "/acme/acme/directory")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func TestACMECertbotThroughHAProxy(t *testing.T) {
	requireTool(t, "certbot", "certbot")
	e := newACMEEnv(t, 3)
	e.startL7Balancer(t)
	dir := t.TempDir()
	certbot := func(args ...string) string {
		t.Helper()
		all := append(args, "--non-interactive", "--server", "https://"+e.l7+"/acme/acme/directory",
			"--config-dir", filepath.Join(dir, "config"), "--work-dir", filepath.Join(dir, "work"), "--logs-dir", filepath.Join(dir, "logs"))
		cmd := exec.Command("certbot", all...)
		cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+e.c.pki.RootFile)
		out, err := cmd.CombinedOutput()
		if err != nil {
			logs, _ := os.ReadFile(filepath.Join(dir, "logs", "letsencrypt.log"))
			t.Fatalf("certbot %s: %v\n%s\n--- log ---\n%s", args[0], err, out, tail(string(logs), 4000))
		}
		return string(out)
	}
	standalone := []string{"--standalone", "--preferred-challenges", "http", "--http-01-port", e.httpPort, "--http-01-address", "127.0.0.1"}
	certbot(append([]string{"certonly", "--agree-tos", "-m", "ops@acme.test", "-d", "cb.acme.test", "-d", "www.cb.acme.test",
		"--key-type", "ecdsa"}, standalone...)...)
	live := filepath.Join(dir, "config", "live", "cb.acme.test")
	first := readLeaf(t, filepath.Join(live, "cert.pem"))
	if got := strings.Join(sorted(first.DNSNames), ","); got != "cb.acme.test,www.cb.acme.test" {
		t.Fatalf("certbot's certificate names %s", got)
	}
	chain, err := os.ReadFile(filepath.Join(live, "fullchain.pem"))
	if err != nil || strings.Count(string(chain), "BEGIN CERTIFICATE") < 2 {
		t.Fatalf("fullchain.pem: %v %s", err, chain)
	}

	certbot(append([]string{"renew", "--force-renewal", "--no-random-sleep-on-renew"}, standalone...)...)
	second := readLeaf(t, filepath.Join(live, "cert.pem"))
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("certbot renew kept the same certificate")
	}

	certbot("revoke", "--cert-name", "cb.acme.test", "--reason", "keycompromise", "--no-delete-after-revoke")
	e.expectRevoked(t, second)
	// The requests spread over the nodes: each served ACME requests.
	for _, tn := range e.c.nodes {
		if n := acmeRequests(t, e, tn); n == 0 {
			t.Errorf("%s served no ACME request: the balancer did not spread certbot's", tn.cfg.NodeName)
		}
	}
}

func readLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pem.Decode(b)
	if p == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// acmeRequests counts the ACME requests a node served, from its metrics.
func acmeRequests(t *testing.T, e *acmeEnv, tn *testNode) int {
	t.Helper()
	r := e.c.do(tn, "GET", "/v1/metrics", nil, "")
	n := 0
	for _, l := range strings.Split(string(r.body), "\n") {
		if strings.HasPrefix(l, "quorumca_http_request_duration_seconds_count{") && strings.Contains(l, `route="POST /acme/`) {
			var v float64
			fmt.Sscan(l[strings.LastIndex(l, " ")+1:], &v)
			n += int(v)
		}
	}
	return n
}

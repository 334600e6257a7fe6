//go:build !agent

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/internal/testwait"
)

// relyingParty is a dev CA and the files relying parties read.
type relyingParty struct {
	t              *testing.T
	dir, api, http string
	root, inter    string // PEM files
	admin          string
	c              *http.Client
}

func startRelyingPartyCA(t *testing.T) *relyingParty {
	t.Helper()
	dir := t.TempDir()
	base := freeBase(t, 1)
	p := start(t, "dev", "-data-dir", dir, "-listen", fmt.Sprintf("127.0.0.1:%d", base))
	testwait.For(t, 60*time.Second, "the dev banner", func() bool { return strings.Contains(p.out.String(), "Press Ctrl-C") })
	admin, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return &relyingParty{t: t, dir: dir, api: fmt.Sprintf("https://127.0.0.1:%d", base), http: fmt.Sprintf("http://127.0.0.1:%d", base+httpPortOffset),
		root: filepath.Join(dir, "root.pem"), inter: filepath.Join(dir, "intermediate.pem"), admin: strings.TrimSpace(string(admin)),
		c: httpsClient(t, filepath.Join(dir, "root.pem"))}
}

// enroll gets a client certificate for name: the certificate and its
// intermediate in one PEM file, its key in another, and its serial.
func (rp *relyingParty) enroll(name string) (chainFile, keyFile string, serial *big.Int) {
	t := rp.t
	t.Helper()
	var tok struct{ Token string }
	if st := postJSON(t, rp.c, rp.api+"/v1/admin/tokens", rp.admin, map[string]any{"sans": []string{name}}, &tok); st != 201 {
		t.Fatalf("mint: %d", st)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, k)
	var out struct {
		Certificate string
		Chain       []string
	}
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	if st := postJSON(t, rp.c, rp.api+"/v1/sign", "", map[string]string{"csr": string(csr), "token": tok.Token}, &out); st != 201 {
		t.Fatalf("sign: %d", st)
	}
	blk, _ := pem.Decode([]byte(out.Certificate))
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	chainFile, keyFile = filepath.Join(rp.dir, name+".pem"), filepath.Join(rp.dir, name+".key")
	os.WriteFile(chainFile, []byte(out.Certificate+strings.Join(out.Chain, "")), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	return chainFile, keyFile, cert.SerialNumber
}

// fetchCRLs runs `quorumca crl fetch` as a cron job would and returns the
// CRLs of the file it wrote.
func (rp *relyingParty) fetchCRLs(file string) []*x509.RevocationList {
	t := rp.t
	t.Helper()
	out, err := exec.Command(binary, "crl", "fetch", "-addr", rp.api, "-ca-file", rp.root, "-out", file).CombinedOutput()
	if err != nil {
		t.Logf("crl fetch: %v\n%s", err, out)
		return nil
	}
	b, _ := os.ReadFile(file)
	var crls []*x509.RevocationList
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return crls
		}
		l, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		crls = append(crls, l)
	}
}

func lists(crls []*x509.RevocationList, serial *big.Int) bool {
	for _, l := range crls {
		for _, e := range l.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(serial) == 0 {
				return true
			}
		}
	}
	return false
}

// get asks url with a client certificate; "" when the server refused.
func get(t *testing.T, url, root, chain, key string) string {
	t.Helper()
	out, err := exec.Command("curl", "-sS", "--max-time", "10", "--cacert", root, "--cert", chain, "--key", key, url).CombinedOutput()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// nginx (ssl_verify_client on, ssl_crl with the bundle `quorumca crl fetch`
// writes) and HAProxy (verify required, crl-file) check the whole chain:
// each needs a CRL from the root as well as the issuer's. Both accept a
// valid client and refuse a revoked one after the next fetch; nginx's
// ssl_ocsp leaf refuses it through OCSP; openssl verify -crl_check_all
// agrees, and refuses every certificate of a revoked intermediate. (Before,
// both servers refused every client: no root CRL.)
func TestNginxAndHAProxyCheckWholeChainsWithOurCRLs(t *testing.T) {
	requireTools(t, "nginx", "haproxy", "openssl", "curl", "python3")
	rp := startRelyingPartyCA(t)
	bundle := filepath.Join(rp.dir, "crls.pem")
	var crls []*x509.RevocationList
	testwait.For(t, 30*time.Second, "a CRL bundle with the root's and the issuer's CRLs", func() bool {
		crls = rp.fetchCRLs(bundle)
		return len(crls) == 2
	})
	python := `
import sys
from cryptography import x509
data = open(sys.argv[1], "rb").read()
crls = [x509.load_pem_x509_crl(b"-----BEGIN X509 CRL-----" + p) for p in data.split(b"-----BEGIN X509 CRL-----")[1:]]
root = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
inter = x509.load_pem_x509_certificate(open(sys.argv[3], "rb").read())
signers = {c.subject: c for c in (root, inter)}
for crl in crls:
    assert crl.is_signature_valid(signers[crl.issuer].public_key()), crl.issuer
    crl.extensions.get_extension_for_class(x509.CRLNumber)
    crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert crl.next_update_utc > crl.last_update_utc
print(sorted(c.issuer.rfc4514_string() for c in crls))
`
	if out, err := exec.Command("python3", "-c", python, bundle, rp.root, rp.inter).CombinedOutput(); err != nil {
		t.Fatalf("python cryptography: %v\n%s", err, out)
	}

	goodChain, goodKey, _ := rp.enroll("good.example")
	badChain, badKey, badSerial := rp.enroll("bad.example")
	verify := func(chain string) string {
		out, _ := exec.Command("openssl", "verify", "-crl_check_all", "-CAfile", rp.root, "-untrusted", rp.inter, "-CRLfile", bundle, chain).CombinedOutput()
		return string(out)
	}
	if out := verify(goodChain); !strings.Contains(out, ": OK") {
		t.Fatalf("openssl verify -crl_check_all of a valid certificate:\n%s", out)
	}

	serverCert, serverKey := filepath.Join(rp.dir, "node1", "tls.pem"), filepath.Join(rp.dir, "node1", "tls.key")
	stapleChain, stapleKey, _ := rp.enroll("127.0.0.1")
	ports := freeBase(t, 4)
	ngx := startNginx(t, rp, serverCert, serverKey, bundle, ports, ports+1, ports+3, stapleChain, stapleKey)
	hap := startHAProxy(t, rp, serverCert, serverKey, bundle, ports+2)
	// Stapling: nginx fetches our OCSP answer for its certificate (from the
	// certificate's AIA) and staples it; curl checks it.
	staple := fmt.Sprintf("https://127.0.0.1:%d/", ports+3)
	testwait.For(t, 30*time.Second, "nginx to staple our OCSP answer", func() bool {
		out, err := exec.Command("curl", "-sS", "--max-time", "10", "--cert-status", "--cacert", rp.root, staple).CombinedOutput()
		return err == nil && strings.TrimSpace(string(out)) == "ok"
	})
	urls := map[string]string{"nginx ssl_crl": fmt.Sprintf("https://127.0.0.1:%d/", ports), "haproxy crl-file": fmt.Sprintf("https://127.0.0.1:%d/", ports+2)}
	for what, url := range urls {
		testwait.For(t, 30*time.Second, what+" to accept a valid client", func() bool { return get(t, url, rp.root, goodChain, goodKey) == "ok" })
		if got := get(t, url, rp.root, badChain, badKey); got != "ok" {
			t.Errorf("%s refused a client not revoked yet: %q", what, got)
		}
	}

	if st := postJSON(t, rp.c, rp.api+"/v1/revoke", rp.admin, map[string]string{"serial": fmt.Sprintf("%x", badSerial)}, nil); st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	testwait.For(t, 30*time.Second, "the next CRL fetch to list the revoked certificate", func() bool { return lists(rp.fetchCRLs(bundle), badSerial) })
	ngx.reload(t)
	hap.restart(t)
	for what, url := range urls {
		testwait.For(t, 30*time.Second, what+" back, with the new CRLs", func() bool {
			return get(t, url, rp.root, goodChain, goodKey) == "ok" && get(t, url, rp.root, badChain, badKey) != "ok"
		})
	}
	ocspURL := fmt.Sprintf("https://127.0.0.1:%d/", ports+1)
	if got := get(t, ocspURL, rp.root, goodChain, goodKey); got != "ok" {
		t.Errorf("nginx ssl_ocsp leaf refused a valid client: %q", got)
	}
	if got := get(t, ocspURL, rp.root, badChain, badKey); got == "ok" {
		t.Error("nginx ssl_ocsp leaf accepted a revoked client")
	}
	if out := verify(badChain); !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check_all of a revoked certificate:\n%s", out)
	}

	// The intermediate itself: revoked through the operator CLI, listed on
	// the root's CRL, and every certificate under it fails.
	var list []struct {
		Name    string
		Issuers []struct{ ID string }
	}
	out, err := exec.Command(binary, "operator", "authority", "list", "-addr", rp.api, "-ca-file", rp.root, "-admin-token", rp.admin, "-format", "json").Output()
	if err != nil || json.Unmarshal(out, &list) != nil {
		t.Fatalf("authority list: %v\n%s", err, out)
	}
	issuer := ""
	for _, a := range list {
		if a.Name == "default" && len(a.Issuers) == 1 {
			issuer = a.Issuers[0].ID
		}
	}
	if out, err := exec.Command(binary, "operator", "authority", "revoke-issuer", "-name", "default", "-issuer", issuer,
		"-reason", "keyCompromise", "-force", "-addr", rp.api, "-ca-file", rp.root, "-admin-token", rp.admin).CombinedOutput(); err != nil {
		t.Fatalf("revoke-issuer: %v\n%s", err, out)
	}
	interSerial := mustCert(t, rp.inter).SerialNumber
	testwait.For(t, 30*time.Second, "the root's CRL to list the intermediate", func() bool { return lists(rp.fetchCRLs(bundle), interSerial) })
	if out := verify(goodChain); !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check_all under a revoked intermediate:\n%s", out)
	}
}

func mustCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type nginx struct {
	conf, prefix string
}

// startNginx serves "ok" on crlPort to clients that pass ssl_verify_client
// with ssl_crl, and on ocspPort to those that pass ssl_ocsp leaf.
// On staplePort it serves with a certificate we issued (stapleChain,
// stapleKey), stapling our OCSP answer for it.
func startNginx(t *testing.T, rp *relyingParty, cert, key, crls string, crlPort, ocspPort, staplePort int, stapleChain, stapleKey string) *nginx {
	t.Helper()
	prefix := t.TempDir()
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := filepath.Join(prefix, "nginx.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`
daemon off;
%s
worker_processes 1;
pid %s/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
  access_log off;
  ssl_certificate %s;
  ssl_certificate_key %s;
  ssl_client_certificate %s;
  ssl_verify_client on;
  ssl_verify_depth 2;
  server {
    listen 127.0.0.1:%d ssl;
    ssl_crl %s;
    location / { return 200 "ok\n"; }
  }
  server {
    listen 127.0.0.1:%d ssl;
    ssl_ocsp leaf;
    ssl_ocsp_responder %s/v1/ocsp;
    location / { return 200 "ok\n"; }
  }
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_verify_client off;
    ssl_stapling on;
    ssl_stapling_verify on;
    ssl_trusted_certificate %s;
    location / { return 200 "ok\n"; }
  }
}
`, user, prefix, cert, key, rp.root, crlPort, crls, ocspPort, rp.http, staplePort, stapleChain, stapleKey, rp.root)), 0o600)
	cmd := exec.Command("nginx", "-p", prefix, "-c", conf, "-e", "stderr")
	out := new(testwait.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("nginx", "-p", prefix, "-c", conf, "-e", "stderr", "-s", "stop").Run()
		cmd.Wait()
		if t.Failed() {
			t.Logf("nginx:\n%s", out)
		}
	})
	return &nginx{conf: conf, prefix: prefix}
}

// reload makes nginx read the CRL file again, as a cron job's hook would.
func (n *nginx) reload(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("nginx", "-p", n.prefix, "-c", n.conf, "-e", "stderr", "-s", "reload").CombinedOutput(); err != nil {
		t.Fatalf("nginx -s reload: %v\n%s", err, out)
	}
}

type haproxy struct {
	conf string
	cmd  *exec.Cmd
	out  *testwait.Buffer
}

func startHAProxy(t *testing.T, rp *relyingParty, cert, key, crls string, port int) *haproxy {
	t.Helper()
	dir := t.TempDir()
	c, _ := os.ReadFile(cert)
	k, _ := os.ReadFile(key)
	combined := filepath.Join(dir, "server.pem")
	os.WriteFile(combined, append(c, k...), 0o600)
	conf := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(conf, []byte(fmt.Sprintf(`
global
  maxconn 64
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend mtls
  bind 127.0.0.1:%d ssl crt %s ca-file %s verify required crl-file %s
  http-request return status 200 content-type text/plain string ok
`, port, combined, rp.root, crls)), 0o600)
	h := &haproxy{conf: conf}
	h.start(t)
	return h
}

func (h *haproxy) start(t *testing.T) {
	t.Helper()
	h.cmd, h.out = exec.Command("haproxy", "-db", "-f", h.conf), new(testwait.Buffer)
	h.cmd.Stdout, h.cmd.Stderr = h.out, h.out
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, out := h.cmd, h.out
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy:\n%s", out)
		}
	})
}

// restart makes HAProxy read the CRL file again.
func (h *haproxy) restart(t *testing.T) *haproxy {
	t.Helper()
	h.cmd.Process.Kill()
	h.cmd.Wait()
	h.start(t)
	return h
}

// Dev on another -listen: the intermediate and new certificates name the
// URLs of this start, and the root's CRL is served where the intermediate
// says. (Before, a restart on another port kept the first start's URLs,
// and the intermediate named none.)
func TestDevLinksFollowTheListenAddress(t *testing.T) {
	dir := t.TempDir()
	var issuerCDP, leafCDP string
	for round := range 2 {
		base := freeBase(t, 1)
		p := start(t, "dev", "-data-dir", dir, "-listen", fmt.Sprintf("127.0.0.1:%d", base))
		testwait.For(t, 60*time.Second, "the dev banner", func() bool { return strings.Contains(p.out.String(), "Press Ctrl-C") })
		rp := &relyingParty{t: t, dir: dir, api: fmt.Sprintf("https://127.0.0.1:%d", base), root: filepath.Join(dir, "root.pem"),
			c: httpsClient(t, filepath.Join(dir, "root.pem"))}
		admin, _ := os.ReadFile(filepath.Join(dir, "admin.token"))
		rp.admin = strings.TrimSpace(string(admin))
		chain, _, _ := rp.enroll(fmt.Sprintf("r%d.example", round))
		b, _ := os.ReadFile(chain)
		leaf, rest := pem.Decode(b)
		interBlk, _ := pem.Decode(rest)
		l, err1 := x509.ParseCertificate(leaf.Bytes)
		inter, err2 := x509.ParseCertificate(interBlk.Bytes)
		if err1 != nil || err2 != nil || len(inter.CRLDistributionPoints) != 1 || len(l.CRLDistributionPoints) != 1 {
			t.Fatalf("round %d: chain %v %v, intermediate CDP %v", round, err1, err2, inter.CRLDistributionPoints)
		}
		issuerCDP, leafCDP = inter.CRLDistributionPoints[0], l.CRLDistributionPoints[0]
		plain := fmt.Sprintf("http://127.0.0.1:%d/", base+httpPortOffset)
		if !strings.HasPrefix(issuerCDP, plain) || !strings.HasPrefix(leafCDP, plain) {
			t.Fatalf("round %d on %s: intermediate CDP %s, leaf CDP %s", round, plain, issuerCDP, leafCDP)
		}
		testwait.For(t, 30*time.Second, "the root's CRL at the intermediate's CDP", func() bool {
			resp, err := http.Get(issuerCDP)
			if err != nil {
				return false
			}
			der, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			crl, err := x509.ParseRevocationList(der)
			return resp.StatusCode == 200 && err == nil && crl.CheckSignatureFrom(mustCert(t, rp.root)) == nil
		})
		p.stop(t)
	}
}

// With the authority's CRL partitioned (operator authority update
// -crl-shards 4), relying parties that hold only the shards (and the
// root's CRL) still check every certificate against the right one: each
// shard's issuing distribution point names the URL its certificates name.
// openssl verify, nginx ssl_crl and HAProxy crl-file accept a valid client
// and refuse a revoked one; without the revoked certificate's shard,
// openssl fails it ("different CRL scope") rather than taking another
// shard for a complete CRL. Python's cryptography reads the extension.
func TestRelyingPartiesCheckCertificatesAgainstTheirCRLShard(t *testing.T) {
	requireTools(t, "nginx", "haproxy", "openssl", "curl", "python3")
	const shards = 4
	rp := startRelyingPartyCA(t)
	if out, err := exec.Command(binary, "operator", "authority", "update", "-name", "default", "-crl-shards", fmt.Sprint(shards),
		"-addr", rp.api, "-ca-file", rp.root, "-admin-token", rp.admin).CombinedOutput(); err != nil {
		t.Fatalf("authority update -crl-shards: %v\n%s", err, out)
	}
	bundle := filepath.Join(rp.dir, "crls.pem")
	testwait.For(t, 30*time.Second, "a bundle with the root's CRL, the complete one and 4 shards", func() bool {
		return len(rp.fetchCRLs(bundle)) == 2+shards
	})
	// Two valid clients in other shards than the revoked one.
	type client struct {
		chain, key string
		serial     *big.Int
		shard      int
	}
	var bad *client
	var good []*client
	for i := 0; bad == nil || len(good) < 2; i++ {
		if i == 40 {
			t.Fatal("40 certificates fell into fewer than 3 shards")
		}
		chain, key, serial := rp.enroll(fmt.Sprintf("c%d.example", i))
		c := &client{chain, key, serial, int(new(big.Int).Mod(serial, big.NewInt(shards)).Int64())}
		cdp := mustCert(t, chain).CRLDistributionPoints
		if len(cdp) != 1 || !strings.HasSuffix(cdp[0], fmt.Sprintf("/crl/%d", c.shard)) {
			t.Fatalf("certificate in shard %d names %v", c.shard, cdp)
		}
		switch {
		case bad == nil:
			bad = c
		case c.shard != bad.shard && (len(good) == 0 || good[0].shard != c.shard):
			good = append(good, c)
		}
	}
	if st := postJSON(t, rp.c, rp.api+"/v1/revoke", rp.admin, map[string]string{"serial": fmt.Sprintf("%x", bad.serial)}, nil); st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	var crls []*x509.RevocationList
	// The complete CRL and the shard are signed one after the other: wait
	// for the shard, which is all the relying parties below hold.
	testwait.For(t, 30*time.Second, "the next CRL fetch to list the revoked certificate in its shard", func() bool {
		crls = rp.fetchCRLs(bundle)
		for _, l := range crls {
			if idpOf(t, l) != "" && lists([]*x509.RevocationList{l}, bad.serial) {
				return true
			}
		}
		return false
	})

	// Bundles of the root's CRL and the shards, without the complete CRL.
	write := func(name string, skipShard int) string {
		var b []byte
		for _, l := range crls {
			url := idpOf(t, l)
			if url == "" && l.Issuer.String() != mustCert(t, rp.root).Subject.String() {
				continue // the complete CRL
			}
			if url != "" && strings.HasSuffix(url, fmt.Sprintf("/crl/%d", skipShard)) {
				continue
			}
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: l.Raw})...)
		}
		f := filepath.Join(rp.dir, name)
		os.WriteFile(f, b, 0o600)
		return f
	}
	shardsOnly := write("shards.pem", -1)
	verify := func(crlFile, chain string) string {
		out, _ := exec.Command("openssl", "verify", "-crl_check_all", "-CAfile", rp.root, "-untrusted", rp.inter, "-CRLfile", crlFile, chain).CombinedOutput()
		return string(out)
	}
	for _, g := range good {
		if out := verify(shardsOnly, g.chain); !strings.Contains(out, ": OK") {
			t.Errorf("openssl verify, shards only, valid certificate of shard %d:\n%s", g.shard, out)
		}
	}
	if out := verify(shardsOnly, bad.chain); !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify, shards only, revoked certificate:\n%s", out)
	}
	if out := verify(write("others.pem", bad.shard), bad.chain); strings.Contains(out, ": OK") || !strings.Contains(out, "different CRL scope") {
		t.Errorf("openssl verify without the revoked certificate's shard:\n%s", out)
	}

	python := `
import sys
from cryptography import x509
data = open(sys.argv[1], "rb").read()
n = 0
for p in data.split(b"-----BEGIN X509 CRL-----")[1:]:
    crl = x509.load_pem_x509_crl(b"-----BEGIN X509 CRL-----" + p)
    try:
        ext = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    except x509.ExtensionNotFound:
        continue
    assert ext.critical and ext.value.only_contains_user_certs, ext
    assert ext.value.full_name[0].value.endswith("/crl/%d" % n), (n, ext.value.full_name)
    n += 1
assert n == int(sys.argv[2]), n
`
	if out, err := exec.Command("python3", "-c", python, shardsOnly, fmt.Sprint(shards)).CombinedOutput(); err != nil {
		t.Fatalf("python cryptography: %v\n%s", err, out)
	}

	serverCert, serverKey := filepath.Join(rp.dir, "node1", "tls.pem"), filepath.Join(rp.dir, "node1", "tls.key")
	stapleChain, stapleKey, _ := rp.enroll("127.0.0.1")
	ports := freeBase(t, 4)
	startNginx(t, rp, serverCert, serverKey, shardsOnly, ports, ports+1, ports+3, stapleChain, stapleKey)
	startHAProxy(t, rp, serverCert, serverKey, shardsOnly, ports+2)
	urls := map[string]string{"nginx ssl_crl": fmt.Sprintf("https://127.0.0.1:%d/", ports), "haproxy crl-file": fmt.Sprintf("https://127.0.0.1:%d/", ports+2)}
	for what, url := range urls {
		for _, g := range good {
			testwait.For(t, 30*time.Second, what+" to accept a valid client", func() bool { return get(t, url, rp.root, g.chain, g.key) == "ok" })
		}
		if got := get(t, url, rp.root, bad.chain, bad.key); got == "ok" {
			t.Errorf("%s accepted a revoked client with the shards only", what)
		}
	}
}

// idpOf is the URL a CRL's issuing distribution point names, or "".
func idpOf(t *testing.T, l *x509.RevocationList) string {
	for _, e := range l.Extensions {
		if !e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 28}) {
			continue
		}
		var idp struct {
			DP asn1.RawValue `asn1:"optional,tag:0"`
		}
		var name, uri asn1.RawValue
		if _, err := asn1.Unmarshal(e.Value, &idp); err != nil {
			t.Fatal(err)
		}
		if _, err := asn1.Unmarshal(idp.DP.Bytes, &name); err != nil {
			t.Fatal(err)
		}
		if _, err := asn1.Unmarshal(name.Bytes, &uri); err != nil {
			t.Fatal(err)
		}
		return string(uri.Bytes)
	}
	return ""
}

// quorumca crl fetch refuses a CRL numbered below the one the file holds
// for the same scope (a replay), and only for it: the complete CRL, each
// shard (its issuing distribution point) and each issuer (its key
// identifier: a rotated intermediate keeps its predecessor's name) are
// numbered apart. An authority whose CRL was signed a few times, then
// partitioned and rotated twice, still gets its file updated; an older
// bundle replayed afterwards is still refused.
func TestCRLFetchComparesNumbersWithinOneScope(t *testing.T) {
	rp := startRelyingPartyCA(t)
	bundle := filepath.Join(rp.dir, "crls.pem")
	revoke := func(name string) *big.Int {
		t.Helper()
		_, _, serial := rp.enroll(name)
		if st := postJSON(t, rp.c, rp.api+"/v1/revoke", rp.admin, map[string]string{"serial": fmt.Sprintf("%x", serial)}, nil); st != 200 {
			t.Fatalf("revoke: %d", st)
		}
		return serial
	}
	for i := range 3 { // the complete CRL's number climbs past a new shard's first
		serial := revoke(fmt.Sprintf("before%d.example", i))
		testwait.For(t, 30*time.Second, "the fetched file to list a revocation", func() bool { return lists(rp.fetchCRLs(bundle), serial) })
	}
	operator := func(args ...string) {
		t.Helper()
		args = append(append([]string{"operator", "authority"}, args...), "-addr", rp.api, "-ca-file", rp.root, "-admin-token", rp.admin)
		if out, err := exec.Command(binary, args...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	const shards = 4
	operator("update", "-name", "default", "-crl-shards", fmt.Sprint(shards))
	testwait.For(t, 30*time.Second, "the fetched file to hold the root's CRL, the complete one and 4 shards", func() bool {
		return len(rp.fetchCRLs(bundle)) == 2+shards
	})
	// Two rotations: the second intermediate and the third have one name.
	operator("rotate", "-name", "default", "-key", "softkey:"+filepath.Join(rp.dir, "int2.key"), "-create-key")
	serial := revoke("second.example")
	testwait.For(t, 30*time.Second, "the fetched file to list a revocation by the second issuer", func() bool { return lists(rp.fetchCRLs(bundle), serial) })
	operator("rotate", "-name", "default", "-key", "softkey:"+filepath.Join(rp.dir, "int3.key"), "-create-key")
	testwait.For(t, 30*time.Second, "the fetched file to hold the three issuers' CRLs", func() bool { return len(rp.fetchCRLs(bundle)) == 1+3*(1+shards) })
	old, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	serial = revoke("third.example")
	testwait.For(t, 30*time.Second, "the fetched file to list a revocation by the third issuer", func() bool { return lists(rp.fetchCRLs(bundle), serial) })

	// Something between the relying party and the CA replays the older
	// bundle: not written.
	replay := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(old) }))
	defer replay.Close()
	caFile := filepath.Join(rp.dir, "replay-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: replay.Certificate().Raw}), 0o600)
	before, _ := os.ReadFile(bundle)
	out, err := exec.Command(binary, "crl", "fetch", "-addr", replay.URL, "-ca-file", caFile, "-out", bundle).CombinedOutput()
	if after, _ := os.ReadFile(bundle); err == nil || !strings.Contains(string(out), "older than number") || !bytes.Equal(after, before) {
		t.Fatalf("a replayed older bundle: %v\n%s", err, out)
	}
}

package node

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/authority"
)

func requireOpenSSL(t *testing.T) {
	t.Helper()
	requireTool(t, "openssl", "openssl")
}

func openssl(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// openssl checks the CRL and the OCSP responder of a follower, for a good
// and a revoked certificate.
func TestOpenSSLChecksCRLAndOCSPOnFollower(t *testing.T) {
	requireOpenSSL(t)
	c := newTestCluster(t, 3)
	f := c.Followers()[0]
	good := c.enrollHolder(c.nodes[0], "good.example")
	bad := c.enrollHolder(c.nodes[0], "bad.example")
	if r := c.do(c.nodes[0], "POST", "/v1/revoke", map[string]string{"serial": bad.s.Serial, "reason": "keyCompromise"}, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
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

	// The certificates name the CRL and responder of the cluster.
	if len(good.cert.CRLDistributionPoints) != 1 || len(good.cert.OCSPServer) != 1 {
		t.Fatalf("certificate names no CRL or OCSP: %v %v", good.cert.CRLDistributionPoints, good.cert.OCSPServer)
	}
	c.crlListing(f, bad.chain[0], bad.cert.SerialNumber) // within the CRL interval
	resp, err := http.Get("http://" + f.node.HTTPAddr() + "/v1/crl")
	if err != nil {
		t.Fatal(err)
	}
	crlDER, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/pkix-crl" {
		t.Errorf("CRL content type %q", ct)
	}
	write("crl.pem", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER}))

	verify := func(cert string) (string, error) {
		return openssl(t, dir, "verify", "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "root.pem", "-untrusted", "inter.pem", cert)
	}
	if out, err := verify("good.pem"); err != nil || !strings.Contains(out, "good.pem: OK") {
		t.Errorf("openssl verify -crl_check good.pem: %v\n%s", err, out)
	}
	if out, err := verify("bad.pem"); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check bad.pem: %v\n%s", err, out)
	}

	ocspURL := "http://" + f.node.HTTPAddr() + "/v1/ocsp"
	check := func(cert, want string) {
		out, err := openssl(t, dir, "ocsp", "-issuer", "inter.pem", "-cert", cert, "-url", ocspURL,
			"-CAfile", "root.pem", "-no_nonce")
		if err != nil || !strings.Contains(out, "Response verify OK") || !strings.Contains(out, cert+": "+want) {
			t.Errorf("openssl ocsp %s: %v\n%s", cert, err, out)
		}
	}
	check("good.pem", "good")
	check("bad.pem", "revoked")

	// GET, with the request in the path as RFC 6960 appendix A describes.
	req, _ := ocsp.CreateRequest(bad.cert, bad.chain[0], &ocsp.RequestOptions{Hash: crypto.SHA1})
	resp, err = http.Get(ocspURL + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(req)))
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r, err := ocsp.ParseResponseForCert(der, bad.cert, bad.chain[0])
	if err != nil || r.Status != ocsp.Revoked {
		t.Errorf("OCSP GET: %v %+v", err, r)
	}

	// The issuer URL serves the issuing certificate.
	resp, err = http.Get(good.cert.IssuingCertificateURL[0])
	if err != nil {
		t.Fatal(err)
	}
	issuerDER, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(issuerDER, good.chain[0].Raw) {
		t.Error("issuer URL does not serve the issuing certificate")
	}
}

// openssl asks about several certificates in one request (-cert, -serial,
// with a nonce) and reads an answer for each, verified; beyond the limit
// it reads the OCSP malformedRequest response.
func TestOpenSSLOCSPAsksForSeveralCertificates(t *testing.T) {
	requireOpenSSL(t)
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	good := c.enrollHolder(n, "good.example")
	bad := c.enrollHolder(n, "bad.example")
	if r := c.do(n, "POST", "/v1/revoke", map[string]string{"serial": bad.s.Serial, "reason": "keyCompromise"}, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	dir := t.TempDir()
	rootPEM, _ := os.ReadFile(c.pki.RootFile)
	for name, data := range map[string][]byte{"root.pem": rootPEM, "inter.pem": []byte(good.s.Chain[0]),
		"good.pem": []byte(good.s.Certificate), "bad.pem": []byte(bad.s.Certificate)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	never := "0x" + new(big.Int).Add(good.cert.SerialNumber, big.NewInt(1)).Text(16)
	url := "http://" + n.node.HTTPAddr() + "/v1/ocsp"
	out, err := openssl(t, dir, "ocsp", "-issuer", "inter.pem", "-cert", "good.pem", "-cert", "bad.pem", "-serial", never,
		"-url", url, "-CAfile", "root.pem", "-respout", "resp.der")
	var missing []string
	for _, want := range []string{"Response verify OK", "good.pem: good", "bad.pem: revoked", never + ": unknown", "Reason: keyCompromise"} {
		if !strings.Contains(out, want) {
			missing = append(missing, want)
		}
	}
	if err != nil || len(missing) > 0 {
		t.Errorf("openssl ocsp with three certificates: %v, missing %q in\n%s", err, missing, out)
	}
	der, err := os.ReadFile(filepath.Join(dir, "resp.der"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*holder{good, bad} {
		if _, err := ocsp.ParseResponseForCert(der, h.cert, h.chain[0]); err != nil {
			t.Errorf("response for %s: %v", h.cert.Subject.CommonName, err)
		}
	}

	args := []string{"ocsp", "-issuer", "inter.pem", "-url", url, "-no_nonce"}
	for i := range authority.MaxOCSPCertificates + 1 {
		args = append(args, "-serial", strconv.Itoa(i+1))
	}
	// openssl reports the HTTP 400 and does not read the body after it.
	if out, err := openssl(t, dir, args...); err == nil || !strings.Contains(out, "code=400") {
		t.Errorf("openssl ocsp with %d certificates: %v\n%s", authority.MaxOCSPCertificates+1, err, out)
	}
	// Over HTTP: 400 and the OCSP body, for too many and for none.
	one, err := ocsp.CreateRequest(good.cert, good.chain[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, count := range []int{authority.MaxOCSPCertificates + 1, 0} {
		resp, body := postOCSP(t, n, repeatOCSPEntry(t, one, count))
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/ocsp-response" ||
			!bytes.Equal(body, ocsp.MalformedRequestErrorResponse) {
			t.Errorf("%d certificates: %d %s, body %x", count, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
}

// openssl sends a nonce unless told not to, and checks it: the answers,
// good and revoked, echo it and verify, without the warning openssl
// prints when a responder ignores it.
func TestOpenSSLOCSPNonce(t *testing.T) {
	requireOpenSSL(t)
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	good := c.enrollHolder(n, "good.example")
	bad := c.enrollHolder(n, "bad.example")
	if r := c.do(n, "POST", "/v1/revoke", map[string]string{"serial": bad.s.Serial, "reason": "keyCompromise"}, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	dir := t.TempDir()
	rootPEM, _ := os.ReadFile(c.pki.RootFile)
	for name, data := range map[string][]byte{"root.pem": rootPEM, "inter.pem": []byte(good.s.Chain[0]),
		"good.pem": []byte(good.s.Certificate), "bad.pem": []byte(bad.s.Certificate)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	url := "http://" + n.node.HTTPAddr() + "/v1/ocsp"
	for cert, want := range map[string]string{"good.pem": "good", "bad.pem": "revoked"} {
		// Twice: the second finds the answer stored, and must not get it.
		for range 2 {
			out, err := openssl(t, dir, "ocsp", "-issuer", "inter.pem", "-cert", cert, "-url", url, "-CAfile", "root.pem")
			if err != nil || !strings.Contains(out, "Response verify OK") || !strings.Contains(out, cert+": "+want) ||
				strings.Contains(out, "WARNING: no nonce in response") {
				t.Errorf("openssl ocsp %s with a nonce: %v\n%s", cert, err, out)
			}
		}
	}
}

// repeatOCSPEntry makes a request asking count times what req asks.
func repeatOCSPEntry(t *testing.T, req []byte, count int) []byte {
	t.Helper()
	type request struct {
		TBS struct{ List []asn1.RawValue }
	}
	var one, many request
	if _, err := asn1.Unmarshal(req, &one); err != nil || len(one.TBS.List) != 1 {
		t.Fatalf("request: %v", err)
	}
	for range count {
		many.TBS.List = append(many.TBS.List, one.TBS.List[0])
	}
	der, err := asn1.Marshal(many)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

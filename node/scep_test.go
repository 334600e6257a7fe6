package node

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/quorumca/quorumca/internal/testwait"
	"github.com/quorumca/quorumca/scep"
)

// scepRA gives the cluster's default authority a SCEP RA: a soft RSA key
// here, a PKCS#11 key in production.
func (c *testCluster) scepRA(tn *testNode) {
	c.t.Helper()
	key := filepath.Join(c.t.TempDir(), "scep-ra.key")
	r := c.do(tn, "PUT", "/v1/admin/authorities/default/scep-ra", map[string]any{"key": "softkey:" + key, "create_keys": true}, c.admin)
	if r.status != http.StatusOK {
		c.t.Fatalf("scep-ra: %d %s", r.status, r.body)
	}
}

// scepGet asks a node's SCEP endpoint for an operation's answer.
func scepGet(t *testing.T, hc *http.Client, tn *testNode, label, op string) (*http.Response, []byte) {
	t.Helper()
	resp, err := hc.Get("https://" + tn.node.APIAddr() + "/scep/" + label + "?operation=" + op)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// SCEP with the Debian scep package's client: a device gets the RA and CA
// certificates, enrolls with a token as its challenge password through one
// node, asks again through another (the same certificate: the token is
// spent), renews with the certificate it got, and is refused a spent
// token for another key. Our own client then asks for what scepclient
// cannot: GetCert, GetCRL (after a revocation), CertPoll.
func TestSCEPWithScepclient(t *testing.T) {
	requireTool(t, "scepclient", "scep")
	requireOpenSSL(t)
	c := adminCluster(t, 3)
	nodes := c.running()
	c.scepRA(nodes[0])
	hc := c.client
	dir := t.TempDir()
	rootPEM, _ := os.ReadFile(c.pki.RootFile)
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), rootPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	resp, caps := scepGet(t, hc, nodes[1], "default", "GetCACaps")
	if resp.StatusCode != 200 || !bytes.Contains(caps, []byte("AES")) || !bytes.Contains(caps, []byte("POSTPKIOperation")) {
		t.Fatalf("GetCACaps: %d %q", resp.StatusCode, caps)
	}
	resp, body := scepGet(t, hc, nodes[2], "default", "GetCACert")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-x509-ca-ra-cert" {
		t.Fatalf("GetCACert: %d %s %s", resp.StatusCode, resp.Header, body)
	}
	p7, err := pkcs7.Parse(body)
	if err != nil || len(p7.Certificates) < 3 {
		t.Fatalf("GetCACert: %v, %d certificates", err, len(p7.Certificates))
	}
	ra := p7.Certificates[0]
	if _, ok := ra.PublicKey.(*rsa.PublicKey); !ok || ra.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		t.Fatalf("the RA certificate comes first, an RSA key for encipherment: %s %v", ra.Subject, ra.KeyUsage)
	}
	fp := sha256.Sum256(ra.Raw)

	// scepclient encrypts to every certificate GetCACert lists unless a
	// fingerprint picks one, and only RSA keys can be encrypted to: the
	// RA's fingerprint, as the README says.
	run := func(tn *testNode, args ...string) (string, error) {
		full := append([]string{"-server-url", "https://" + tn.node.APIAddr() + "/scep/default", "-ca-fingerprint", hex.EncodeToString(fp[:])}, args...)
		cmd := exec.Command("scepclient", full...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+filepath.Join(dir, "root.pem"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	token := c.mintToken(nodes[0], "1h", "scep1.example")
	if out, err := run(nodes[1], "-private-key", "dev.key", "-certificate", "dev.pem", "-cn", "scep1.example", "-challenge", token); err != nil {
		t.Fatalf("scepclient enroll: %v\n%s", err, out)
	}
	cert := parsePEMCert(t, readFile(t, dir, "dev.pem"))
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "scep1.example" || !bytes.Equal(cert.RawIssuer, ra.RawIssuer) {
		t.Fatalf("issued %v by %s", cert.DNSNames, cert.Issuer)
	}
	// The answer lost, the device asks again through another node: the
	// same certificate for the same key (a new file, so scepclient sends a
	// PKCSReq again rather than a renewal).
	if out, err := run(nodes[2], "-private-key", "dev.key", "-certificate", "again.pem", "-cn", "scep1.example", "-challenge", token); err != nil {
		t.Fatalf("scepclient again: %v\n%s", err, out)
	}
	if again := parsePEMCert(t, readFile(t, dir, "again.pem")); again.SerialNumber.Cmp(cert.SerialNumber) != 0 {
		t.Fatalf("the spent token gave another certificate: %s, then %s", cert.SerialNumber, again.SerialNumber)
	}
	// Another key with the spent token: refused, in a signed CertRep.
	if err := os.MkdirAll(filepath.Join(dir, "other"), 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := run(nodes[0], "-private-key", "other/dev.key", "-certificate", "other/dev.pem", "-cn", "scep1.example", "-challenge", token); err == nil || !strings.Contains(out, "failInfo") {
		t.Fatalf("a spent token for another key: %v\n%s", err, out)
	}
	if out, err := run(nodes[0], "-private-key", "other/dev.key", "-certificate", "other/dev.pem", "-cn", "scep1.example", "-challenge", "qcet_forged"); err == nil || !strings.Contains(out, "failInfo") {
		t.Fatalf("a forged token: %v\n%s", err, out)
	}
	// Renewal: scepclient signs a RenewalReq with dev.pem, and writes the
	// new certificate over it.
	if out, err := run(nodes[2], "-private-key", "dev.key", "-certificate", "dev.pem", "-cn", "scep1.example"); err != nil {
		t.Fatalf("scepclient renew: %v\n%s", err, out)
	}
	renewed := parsePEMCert(t, readFile(t, dir, "dev.pem"))
	if renewed.SerialNumber.Cmp(cert.SerialNumber) == 0 || len(renewed.DNSNames) != 1 || renewed.DNSNames[0] != "scep1.example" {
		t.Fatalf("renewed %s %v (was %s)", renewed.SerialNumber, renewed.DNSNames, cert.SerialNumber)
	}

	// GetCert, GetCRL and CertPoll with our own client, signed with the
	// device's key and certificate.
	key := readRSAKey(t, filepath.Join(dir, "dev.key"))
	ask := func(tn *testNode, typ string, content []byte) scep.Reply {
		t.Helper()
		sent, err := scep.NewRequest(typ, content, ra, renewed, key, "tx-"+typ)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Post("https://"+tn.node.APIAddr()+"/scep/default?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(sent.Message))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", typ, resp.StatusCode, b)
		}
		out, err := sent.ReadReply(b, []*x509.Certificate{ra})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		return out
	}
	issuerAndSerial := func(c *x509.Certificate) []byte {
		b, err := asn1.Marshal(scep.IssuerAndSerial{Issuer: asn1.RawValue{FullBytes: c.RawIssuer}, Serial: c.SerialNumber})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if got := ask(nodes[1], scep.GetCert, issuerAndSerial(cert)); len(got.Certs) != 1 || !bytes.Equal(got.Certs[0], cert.Raw) {
		t.Fatalf("GetCert: %+v", got)
	}
	unknown := *cert
	unknown.SerialNumber = big.NewInt(12345)
	if got := ask(nodes[1], scep.GetCert, issuerAndSerial(&unknown)); got.FailInfo != scep.FailBadCertID {
		t.Fatalf("GetCert of an unknown serial: %+v", got)
	}
	if r := c.do(nodes[0], "POST", "/v1/admin/certs/"+cert.SerialNumber.Text(16)+"/revoke", map[string]string{"reason": "superseded"}, c.admin); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	// The issuer's CRL, as /v1/crl serves it: the leader signs the next
	// one, which lists the revocation, within moments.
	testwait.For(t, 30*time.Second, "GetCRL to list the revoked certificate", func() bool {
		got := ask(nodes[2], scep.GetCRL, issuerAndSerial(cert))
		if len(got.CRLs) != 1 {
			t.Fatalf("GetCRL: %+v", got)
		}
		crl, err := x509.ParseRevocationList(got.CRLs[0])
		if err != nil || crl.CheckSignatureFrom(p7.Certificates[1]) != nil {
			t.Fatalf("GetCRL: %v", err)
		}
		return crlLists(crl, cert.SerialNumber)
	})
	subject, _ := asn1.Marshal(pkix.Name{CommonName: "scep1.example"}.ToRDNSequence())
	poll, _ := asn1.Marshal(scep.IssuerAndSubject{Issuer: asn1.RawValue{FullBytes: cert.RawIssuer}, Subject: asn1.RawValue{FullBytes: subject}})
	if got := ask(nodes[0], scep.CertPoll, poll); len(got.Certs) != 1 || !bytes.Equal(got.Certs[0], renewed.Raw) {
		t.Fatalf("CertPoll: %+v", got)
	}

	// A provisioner that does not exist, or whose authority has no RA: the
	// same not found.
	if resp, body := scepGet(t, hc, nodes[0], "nope", "GetCACert"); resp.StatusCode != 404 || !bytes.Contains(body, []byte(`"not_found"`)) {
		t.Fatalf("unknown provisioner: %d %s", resp.StatusCode, body)
	}
}

func crlLists(crl *x509.RevocationList, serial *big.Int) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

func readRSAKey(t *testing.T, path string) *rsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey)
}

// scepEnroll enrolls a new RSA key for name with our own SCEP client,
// through tn, with token as the challenge password.
func scepEnroll(t *testing.T, hc *http.Client, tn *testNode, token, name string) *x509.Certificate {
	t.Helper()
	resp, body := scepGet(t, hc, tn, "default", "GetCACert")
	if resp.StatusCode != 200 {
		t.Fatalf("GetCACert: %d %s", resp.StatusCode, body)
	}
	ra, err := scep.ParseCACerts(body)
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	self, err := scep.SelfSigned(key, name)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := scep.CSRWithChallenge(&x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}}, key, token)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := scep.NewRequest(scep.PKCSReq, csr, ra[0], self, key, "tx-"+name)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = hc.Post("https://"+tn.node.APIAddr()+"/scep/default?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(sent.Message))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("PKCSReq: %d %s", resp.StatusCode, b)
	}
	out, err := sent.ReadReply(b, ra)
	if err != nil || out.FailInfo != "" || len(out.Certs) == 0 {
		t.Fatalf("PKCSReq: %+v %v", out, err)
	}
	c, err := x509.ParseCertificate(out.Certs[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// scepPost sends a pkiMessage to tn's default SCEP endpoint.
func scepPost(t *testing.T, hc *http.Client, tn *testNode, msg []byte) (int, []byte) {
	t.Helper()
	resp, err := hc.Post("https://"+tn.node.APIAddr()+"/scep/default?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// What an outside tester found, attacked again: envelopes that do not open
// or hold garbage all fail alike (no padding oracle to read captured
// requests with); a request signed with a key replies cannot be encrypted
// to is refused before its token is spent; a provisioner whose authority
// has no RA is the same 404 as none, for every operation.
func TestSCEPAttack(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitLogFormat()
	n := c.running()[0]
	c.scepRA(n)
	_, body := scepGet(t, c.client, n, "default", "GetCACert")
	ra, err := scep.ParseCACerts(body)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	self, _ := scep.SelfSigned(key, "attacker")
	failText := func(typ string, content []byte, mutate func([]byte)) (string, string) {
		t.Helper()
		sent, err := scep.NewRequest(typ, content, ra[0], self, key, "tx-attack")
		if err != nil {
			t.Fatal(err)
		}
		msg := sent.Message
		if mutate != nil {
			// Re-sign around a changed envelope, as an attacker would.
			p7, _ := pkcs7.Parse(msg)
			env := bytes.Clone(p7.Content)
			mutate(env)
			sent = resignSCEP(t, typ, env, self, key)
			msg = sent.Message
		}
		status, b := scepPost(t, c.client, n, msg)
		if status != 200 {
			t.Fatalf("%s: %d %s", typ, status, b)
		}
		out, err := sent.ReadReply(b, ra)
		if err != nil {
			t.Fatal(err)
		}
		return out.FailInfo, out.FailText
	}
	garbage := make([]byte, 100)
	rand.Read(garbage)
	info0, text0 := failText(scep.GetCert, garbage, nil) // opens, holds garbage
	if info0 != scep.FailBadMessageCheck {
		t.Fatalf("garbage content: %s %s", info0, text0)
	}
	for name, mutate := range map[string]func([]byte){
		"the encrypted key":      func(env []byte) { env[len(env)/3] ^= 0x01 },
		"the last content block": func(env []byte) { env[len(env)-1] ^= 0x01 },
		"the next-to-last block": func(env []byte) { env[len(env)-20] ^= 0x01 },
	} {
		for _, typ := range []string{scep.GetCert, scep.PKCSReq} {
			if info, text := failText(typ, garbage, mutate); info != info0 || text != text0 {
				t.Errorf("%s changed, %s: %s %q, want %s %q", name, typ, info, text, info0, text0)
			}
		}
	}

	// An EC signer: refused (badAlg) before the token is touched.
	token := c.mintToken(n, "1h", "ec-signer.example")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecSelf, _ := scep.SelfSigned(ec, "ec")
	csr, _ := scep.CSRWithChallenge(&x509.CertificateRequest{DNSNames: []string{"ec-signer.example"}}, ec, token)
	sent, err := scep.NewRequest(scep.PKCSReq, csr, ra[0], ecSelf, ec, "tx-ec")
	if err != nil {
		t.Fatal(err)
	}
	status, b := scepPost(t, c.client, n, sent.Message)
	if out, err := sent.Check(b, ra); status != 200 || err != nil || out.FailInfo != scep.FailBadAlg {
		t.Fatalf("an EC signer: %d %+v %v", status, out, err)
	}
	if cert := scepEnroll(t, c.client, n, token, "ec-signer.example"); cert.DNSNames[0] != "ec-signer.example" {
		t.Fatalf("the token after the refusal: %v", cert.DNSNames)
	}

	// Without an RA, every operation is the same 404 as an unknown name.
	if r := c.do(n, "DELETE", "/v1/admin/authorities/default/scep-ra", nil, c.admin); r.status != http.StatusNoContent {
		t.Fatalf("delete the RA: %d %s", r.status, r.body)
	}
	for _, label := range []string{"default", "nope"} {
		for _, op := range []string{"GetCACaps", "GetCACert", "PKIOperation", "Other"} {
			resp, body := scepGet(t, c.client, n, label, op)
			if resp.StatusCode != 404 || !bytes.Contains(body, []byte(`"not_found"`)) || !bytes.Contains(body, []byte(label)) {
				t.Errorf("%s %s: %d %s", label, op, resp.StatusCode, body)
			}
		}
	}
}

// resignSCEP wraps an envelope in a new pkiMessage signed by key.
func resignSCEP(t *testing.T, typ string, env []byte, self *x509.Certificate, key *rsa.PrivateKey) *scep.Sent {
	t.Helper()
	sent, err := scep.NewSigned(typ, env, self, key, "tx-attack")
	if err != nil {
		t.Fatal(err)
	}
	return sent
}

package node

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// estCurl runs curl against a node's EST path and returns the HTTP status
// and the headers curl wrote; the body goes to out.
func estCurl(t *testing.T, dir string, args ...string) (int, string) {
	t.Helper()
	full := append([]string{"-sS", "--cacert", "root.pem", "-D", "headers.txt", "-o", "body.out", "-w", "%{http_code}"}, args...)
	cmd := exec.Command("curl", full...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	var status int
	for _, c := range strings.TrimSpace(string(out)) {
		status = status*10 + int(c-'0')
	}
	h, _ := os.ReadFile(filepath.Join(dir, "headers.txt"))
	return status, string(h)
}

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sh runs a shell pipeline in dir, as RFC 7030's examples do.
func sh(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("sh", "-ec", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// EST with curl and openssl only, as RFC 7030's examples: a device gets
// the CA certificates, enrolls with a token through one node, enrolls
// again through another (the same certificate, the token being spent),
// reenrolls with a new key over mutual TLS, and is refused what it may
// not do, each refusal a JSON error.
func TestESTWithCurlAndOpenSSL(t *testing.T) {
	requireOpenSSL(t)
	requireTool(t, "curl", "curl")
	c := adminCluster(t, 3) // with the admin authority: its certificates are refused here
	nodes := c.running()
	dir := t.TempDir()
	rootPEM, _ := os.ReadFile(c.pki.RootFile)
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), rootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	url := func(tn *testNode, path string) string {
		return "https://" + tn.node.APIAddr() + "/.well-known/est/" + path
	}

	// cacerts: base64 of a certs-only PKCS#7 holding the chain and root.
	status, headers := estCurl(t, dir, url(nodes[1], "cacerts"))
	if status != http.StatusOK || !strings.Contains(strings.ToLower(headers), "content-type: application/pkcs7-mime") {
		t.Fatalf("cacerts: %d\n%s", status, headers)
	}
	sh(t, dir, "openssl base64 -d -in body.out | openssl pkcs7 -inform DER -print_certs -out cacerts.pem")
	cacerts := readFile(t, dir, "cacerts.pem")
	if !strings.Contains(cacerts, strings.TrimSpace(string(rootPEM))) || strings.Count(cacerts, "BEGIN CERTIFICATE") < 2 {
		t.Fatalf("cacerts holds no root and issuer:\n%s", cacerts)
	}

	// A device's key and CSR, base64 DER as EST sends it.
	csr := func(key, name string) {
		sh(t, dir, "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "+key+
			" -subj /CN="+name+" -addext subjectAltName=DNS:"+name+" -outform DER | openssl base64 > "+key+".csr.b64")
	}
	csr("dev1.key", "est1.example")
	r := c.do(nodes[0], "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"est1.example"}, "ttl": "1h"}, c.admin)
	var tok struct{ ID, Token string }
	r.decode(t, &tok)
	enroll := func(tn *testNode, user, csrFile string, extra ...string) (int, string) {
		args := append([]string{"--data-binary", "@" + csrFile, "-H", "Content-Type: application/pkcs10"}, extra...)
		if user != "" {
			args = append(args, "--user", user)
		}
		return estCurl(t, dir, append(args, url(tn, "simpleenroll"))...)
	}
	certOf := func(out string) *x509.Certificate {
		sh(t, dir, "openssl base64 -d -in body.out | openssl pkcs7 -inform DER -print_certs -out "+out)
		return parsePEMCert(t, readFile(t, dir, out))
	}

	// Refused: no credentials, a wrong token ID, another media type.
	if status, headers := enroll(nodes[1], "", "dev1.key.csr.b64"); status != http.StatusUnauthorized || !strings.Contains(headers, `Basic realm="quorumca EST"`) {
		t.Errorf("no credentials: %d\n%s", status, headers)
	}
	if status, _ := enroll(nodes[1], "someone-else:"+tok.Token, "dev1.key.csr.b64"); status != http.StatusUnauthorized {
		t.Errorf("another token ID: %d %s", status, readFile(t, dir, "body.out"))
	}
	if status, _ := estCurl(t, dir, "--user", tok.ID+":"+tok.Token, "--data-binary", "@dev1.key.csr.b64", "-H", "Content-Type: application/json", url(nodes[1], "simpleenroll")); status != http.StatusBadRequest || !strings.Contains(readFile(t, dir, "body.out"), `"unsupported_media_type"`) {
		t.Errorf("application/json: %d %s", status, readFile(t, dir, "body.out"))
	}
	sh(t, dir, "echo 'not base64!' > junk.b64")
	if status, _ := enroll(nodes[1], tok.ID+":"+tok.Token, "junk.b64"); status != http.StatusBadRequest {
		t.Errorf("junk: %d %s", status, readFile(t, dir, "body.out"))
	}

	// Enrolled through a follower.
	status, headers = enroll(nodes[1], tok.ID+":"+tok.Token, "dev1.key.csr.b64")
	if status != http.StatusOK || !strings.Contains(strings.ToLower(headers), "smime-type=certs-only") {
		t.Fatalf("simpleenroll: %d %s\n%s", status, readFile(t, dir, "body.out"), headers)
	}
	first := certOf("dev1.pem")
	if first.Subject.CommonName != "est1.example" || len(first.DNSNames) != 1 || first.DNSNames[0] != "est1.example" {
		t.Fatalf("issued %v %v", first.Subject, first.DNSNames)
	}
	if out := sh(t, dir, "openssl verify -CAfile root.pem -untrusted cacerts.pem dev1.pem"); !strings.Contains(out, "dev1.pem: OK") {
		t.Fatalf("openssl verify: %s", out)
	}
	// The same request through another node: the same certificate (an
	// answer lost on the way), never a second one; another key: refused.
	if status, _ := enroll(nodes[2], tok.ID+":"+tok.Token, "dev1.key.csr.b64"); status != http.StatusOK || certOf("again.pem").SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("the same enrollment again: %d, or another certificate", status)
	}
	csr("other.key", "est1.example")
	if status, _ := enroll(nodes[0], tok.ID+":"+tok.Token, "other.key.csr.b64"); status != http.StatusConflict || !strings.Contains(readFile(t, dir, "body.out"), `"token_used"`) {
		t.Errorf("a spent token with another key: %d %s", status, readFile(t, dir, "body.out"))
	}

	// simplereenroll: the current certificate in the handshake, a new key.
	csr("dev1b.key", "est1.example")
	status, _ = estCurl(t, dir, "--cert", "dev1.pem", "--key", "dev1.key", "--data-binary", "@dev1b.key.csr.b64",
		"-H", "Content-Type: application/pkcs10", url(nodes[2], "simplereenroll"))
	if status != http.StatusOK {
		t.Fatalf("simplereenroll: %d %s", status, readFile(t, dir, "body.out"))
	}
	renewed := certOf("dev1b.pem")
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 || renewed.Subject.CommonName != "est1.example" {
		t.Fatalf("reenrolled %v %v", renewed.SerialNumber, renewed.Subject)
	}
	// Other names than the certificate's, or no certificate: refused.
	csr("dev1c.key", "other.example")
	if status, _ := estCurl(t, dir, "--cert", "dev1b.pem", "--key", "dev1b.key", "--data-binary", "@dev1c.key.csr.b64",
		"-H", "Content-Type: application/pkcs10", url(nodes[0], "simplereenroll")); status != http.StatusForbidden {
		t.Errorf("reenroll under other names: %d %s", status, readFile(t, dir, "body.out"))
	}
	if status, _ := estCurl(t, dir, "--data-binary", "@dev1c.key.csr.b64", "-H", "Content-Type: application/pkcs10", url(nodes[0], "simplereenroll")); status != http.StatusUnauthorized {
		t.Errorf("reenroll without a certificate: %d %s", status, readFile(t, dir, "body.out"))
	}

	// An admin's certificate renews at /v1/renew only, never over EST.
	adminKey := newKey(t)
	r = c.do(nodes[0], "POST", "/v1/admin/admins", map[string]string{"name": "carol", "role": "operator",
		"csr": string(csrFor(t, adminKey, &x509.CertificateRequest{}))}, c.admin)
	var adm struct{ Certificate string }
	r.decode(t, &adm)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(adminKey)
	for name, data := range map[string][]byte{"admin.pem": []byte(adm.Certificate), "admin.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sh(t, dir, "openssl req -new -key admin.key -subj /CN=carol -outform DER | openssl base64 > admin.csr.b64")
	if status, _ := estCurl(t, dir, "--cert", "admin.pem", "--key", "admin.key", "--data-binary", "@admin.csr.b64",
		"-H", "Content-Type: application/pkcs10", url(nodes[1], "simplereenroll")); status != http.StatusForbidden {
		t.Errorf("an admin certificate over EST: %d %s", status, readFile(t, dir, "body.out"))
	}

	// A provisioner's own path: its token only, and its csrattrs.
	r = c.do(nodes[0], "POST", "/v1/admin/provisioners", map[string]any{"name": "routers", "kind": "enrollment-token",
		"authority": "default", "policy": map[string]any{"dns": []string{"*.routers.example"}, "key_types": []string{"P-256", "RSA"}}}, c.admin)
	if r.status != http.StatusCreated {
		t.Fatalf("provisioner: %d %s", r.status, r.body)
	}
	// An unspent token of the default provisioner: refused on routers'
	// path, and still good on its own.
	r = c.do(nodes[0], "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"est3.example"}, "ttl": "1h"}, c.admin)
	var tok3 struct{ ID, Token string }
	r.decode(t, &tok3)
	csr("dev3.key", "est3.example")
	if status, _ := estCurl(t, dir, "--user", tok3.ID+":"+tok3.Token, "--data-binary", "@dev3.key.csr.b64",
		"-H", "Content-Type: application/pkcs10", url(nodes[1], "routers/simpleenroll")); status != http.StatusForbidden {
		t.Errorf("another provisioner's token on routers' path: %d %s", status, readFile(t, dir, "body.out"))
	}
	if status, _ := enroll(nodes[2], tok3.ID+":"+tok3.Token, "dev3.key.csr.b64"); status != http.StatusOK {
		t.Errorf("the token refused on routers' path, on its own: %d %s", status, readFile(t, dir, "body.out"))
	}
	status, headers = estCurl(t, dir, url(nodes[1], "routers/csrattrs"))
	if status != http.StatusOK || !strings.Contains(strings.ToLower(headers), "application/csrattrs") {
		t.Fatalf("csrattrs: %d\n%s", status, headers)
	}
	attrs := sh(t, dir, "openssl base64 -d -in body.out | openssl asn1parse -inform DER")
	for _, want := range []string{"id-ecPublicKey", "prime256v1", "rsaEncryption"} {
		if !strings.Contains(attrs, want) {
			t.Errorf("csrattrs lacks %s:\n%s", want, attrs)
		}
	}
	if strings.Contains(attrs, "secp384r1") {
		t.Errorf("csrattrs names a curve the policy does not allow:\n%s", attrs)
	}
	if status, _ := estCurl(t, dir, url(nodes[1], "csrattrs")); status != http.StatusNoContent {
		t.Errorf("csrattrs without a provisioner: %d", status)
	}
	if status, _ := estCurl(t, dir, url(nodes[1], "nosuch/cacerts")); status != http.StatusNotFound || !strings.Contains(readFile(t, dir, "body.out"), `"not_found"`) {
		t.Errorf("an unknown provisioner: %d %s", status, readFile(t, dir, "body.out"))
	}

	// Without a leader: 202 and Retry-After, which EST clients retry, and
	// the token stays unspent.
	csr("dev2.key", "est2.example")
	r = c.do(nodes[0], "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"est2.example"}, "ttl": "1h"}, c.admin)
	var tok2 struct{ ID, Token string }
	r.decode(t, &tok2)
	last := nodes[2]
	c.Stop(nodes[0])
	c.Stop(nodes[1])
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, headers = enroll(last, tok2.ID+":"+tok2.Token, "dev2.key.csr.b64")
		if status == http.StatusAccepted || time.Now().After(deadline) {
			break
		}
	}
	if status != http.StatusAccepted || !strings.Contains(strings.ToLower(headers), "retry-after: ") {
		t.Fatalf("without a leader: %d %s\n%s", status, readFile(t, dir, "body.out"), headers)
	}
	c.Restart(nodes[0])
	c.Restart(nodes[1])
	deadline = time.Now().Add(30 * time.Second)
	for {
		status, _ = enroll(last, tok2.ID+":"+tok2.Token, "dev2.key.csr.b64")
		if status == http.StatusOK || time.Now().After(deadline) {
			break
		}
	}
	if status != http.StatusOK || certOf("dev2.pem").Subject.CommonName != "est2.example" {
		t.Fatalf("after the leader came back: %d %s", status, readFile(t, dir, "body.out"))
	}
}

// EST serverkeygen (RFC 7030 section 4.4) with curl and openssl: only on a
// provisioner whose policy lets the CA make keys; the reply holds the key
// (PKCS#8) and its certificate, once: the token is then spent, and the
// same request gets token_used, not another key.
func TestESTServerKeygen(t *testing.T) {
	requireOpenSSL(t)
	requireTool(t, "curl", "curl")
	c := newTestCluster(t, 3)
	c.waitLogFormat()
	nodes := c.running()
	dir := t.TempDir()
	rootPEM, _ := os.ReadFile(c.pki.RootFile)
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), rootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.do(nodes[0], "POST", "/v1/admin/provisioners", map[string]any{"name": "cameras", "kind": "enrollment-token",
		"authority": "default", "policy": map[string]any{"dns": []string{".cameras.example"}, "key_types": []string{"P-384", "RSA"}, "server_keygen": true}}, c.admin)
	if r.status != http.StatusCreated {
		t.Fatalf("provisioner: %d %s", r.status, r.body)
	}
	token := func(prov, name string) (string, string) {
		r := c.do(nodes[0], "POST", "/v1/admin/tokens", map[string]any{"sans": []string{name}, "ttl": "1h", "provisioner": prov}, c.admin)
		var tok struct{ ID, Token string }
		r.decode(t, &tok)
		return tok.ID, tok.Token
	}
	// The client's CSR names what it wants; its key only signs it.
	sh(t, dir, "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout throwaway.key"+
		" -subj /CN=cam1.cameras.example -addext subjectAltName=DNS:cam1.cameras.example -outform DER | openssl base64 > cam1.csr.b64")
	keygen := func(tn *testNode, path, id, secret string) (int, string) {
		return estCurl(t, dir, "--user", id+":"+secret, "--data-binary", "@cam1.csr.b64", "-H", "Content-Type: application/pkcs10",
			"https://"+tn.node.APIAddr()+"/.well-known/est/"+path)
	}

	id, secret := token("cameras", "cam1.cameras.example")
	status, headers := keygen(nodes[1], "cameras/serverkeygen", id, secret)
	if status != http.StatusOK || !strings.Contains(strings.ToLower(headers), "content-type: multipart/mixed") || !strings.Contains(strings.ToLower(headers), "cache-control: no-store") {
		t.Fatalf("serverkeygen: %d\n%s\n%s", status, headers, readFile(t, dir, "body.out"))
	}
	_, params, err := mime.ParseMediaType(headerValue(headers, "Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(strings.NewReader(readFile(t, dir, "body.out")), params["boundary"])
	parts := map[string]string{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		ct, _, _ := strings.Cut(p.Header.Get("Content-Type"), ";")
		parts[ct] = string(b)
	}
	if len(parts) != 2 || parts["application/pkcs8"] == "" || parts["application/pkcs7-mime"] == "" {
		t.Fatalf("parts: %v", parts)
	}
	os.WriteFile(filepath.Join(dir, "key.b64"), []byte(parts["application/pkcs8"]), 0o600)
	os.WriteFile(filepath.Join(dir, "cert.b64"), []byte(parts["application/pkcs7-mime"]), 0o600)
	sh(t, dir, "openssl base64 -d -in key.b64 | openssl pkey -inform DER -out cam1.key")
	sh(t, dir, "openssl base64 -d -in cert.b64 | openssl pkcs7 -inform DER -print_certs -out cam1.pem")
	// The key is a P-384 key (the first type the policy allows), and the
	// certificate's.
	if out := sh(t, dir, "openssl pkey -in cam1.key -text_pub -noout"); !strings.Contains(out, "384 bit") {
		t.Fatalf("the key made is not P-384:\n%s", out)
	}
	if a, b := sh(t, dir, "openssl pkey -in cam1.key -pubout"), sh(t, dir, "openssl x509 -in cam1.pem -noout -pubkey"); a != b {
		t.Fatalf("the certificate is not for the key sent:\n%s\n%s", a, b)
	}
	cert := parsePEMCert(t, readFile(t, dir, "cam1.pem"))
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "cam1.cameras.example" {
		t.Fatalf("names %v", cert.DNSNames)
	}
	// Once: the same request again is token_used, on any node.
	if status, _ := keygen(nodes[2], "cameras/serverkeygen", id, secret); status != http.StatusConflict || !strings.Contains(readFile(t, dir, "body.out"), `"token_used"`) {
		t.Fatalf("serverkeygen again: %d %s", status, readFile(t, dir, "body.out"))
	}
	// A provisioner without server_keygen: refused, and its token stays
	// unspent (simpleenroll with it then works).
	id2, secret2 := token("", "cam1.cameras.example")
	if status, _ := keygen(nodes[0], "serverkeygen", id2, secret2); status != http.StatusForbidden {
		t.Fatalf("serverkeygen without server_keygen: %d %s", status, readFile(t, dir, "body.out"))
	}
	if status, _ := keygen(nodes[0], "simpleenroll", id2, secret2); status != http.StatusOK {
		t.Fatalf("the refused token, on simpleenroll: %d %s", status, readFile(t, dir, "body.out"))
	}
	// Forged credentials: no key is made.
	if status, _ := keygen(nodes[0], "cameras/serverkeygen", id, "qcet_forged"); status != http.StatusUnauthorized {
		t.Fatalf("a forged token: %d %s", status, readFile(t, dir, "body.out"))
	}
}

// headerValue reads a header from curl's -D dump.
func headerValue(headers, name string) string {
	for _, l := range strings.Split(headers, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

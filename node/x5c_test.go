package node

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumca/quorumca/agent"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// manufacturer is a device maker's CA: a root and the factory line's
// intermediate, which signs each device's factory certificate (IDevID).
type manufacturer struct {
	root, line       *x509.Certificate
	rootKey, lineKey crypto.Signer
}

func newManufacturer(t *testing.T, name string) *manufacturer {
	t.Helper()
	m := &manufacturer{rootKey: newKey(t), lineKey: newKey(t)}
	m.root = makeCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: name + " root"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, m.rootKey.Public(), m.rootKey)
	m.line = makeCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: name + " line 1"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, m.root, m.lineKey.Public(), m.rootKey)
	return m
}

func makeCert(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(20*365*24*time.Hour)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (m *manufacturer) rootPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.root.Raw}))
}

// device makes a factory certificate for serial with key's public key,
// and the TLS identity that presents it with the line's certificate.
func (m *manufacturer) device(t *testing.T, serial string, key crypto.Signer) tls.Certificate {
	t.Helper()
	return m.deviceAs(t, &x509.Certificate{Subject: pkix.Name{CommonName: "sensor " + serial, SerialNumber: serial},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, key)
}

// deviceAs is device with the template's subject and extended key usage.
func (m *manufacturer) deviceAs(t *testing.T, tmpl *x509.Certificate, key crypto.Signer) tls.Certificate {
	t.Helper()
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	leaf := makeCert(t, tmpl, m.line, key.Public(), m.lineKey)
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, m.line.Raw}, PrivateKey: key, Leaf: leaf}
}

// writePEM writes a TLS identity as curl and the agent read it: the
// certificate then its chain, and the key.
func writeIdentity(t *testing.T, dir, name string, id tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	var certs []byte
	for _, der := range id.Certificate {
		certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(id.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certs, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// x5cProvisioner creates an x5c provisioner trusting m.
func (c *testCluster) x5cProvisioner(tn *testNode, name string, m *manufacturer, allowList bool) {
	c.t.Helper()
	c.x5cProvisionerTTL(tn, name, m, allowList, "1h")
}

func (c *testCluster) x5cProvisionerTTL(tn *testNode, name string, m *manufacturer, allowList bool, ttl string) {
	c.t.Helper()
	r := c.do(tn, "POST", "/v1/admin/provisioners", map[string]any{"name": name, "kind": "x5c", "authority": "default",
		"policy": map[string]any{"dns": []string{".devices.example"}, "default_ttl": ttl, "renew_grace": "1m"},
		"x5c":    map[string]any{"roots": m.rootPEM(), "names": []string{"{serial}.devices.example"}, "allow_list": allowList}}, c.admin)
	if r.status != http.StatusCreated {
		c.t.Fatalf("x5c provisioner: %d %s", r.status, r.body)
	}
}

// signX5C asks tn for a certificate for csr as the device of id.
func (c *testCluster) signX5C(id tls.Certificate, tn *testNode, prov string, csr []byte) reply {
	c.t.Helper()
	body, _ := json.Marshal(map[string]string{"csr": string(csr), "provisioner": prov})
	return c.mtlsAs(id, tn, "POST", "/v1/sign", body, "")
}

func errorCode(t *testing.T, r reply) string {
	t.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// Zero-touch enrollment through the JSON API: a device proves its factory
// certificate in the handshake and gets the names its serial number maps
// to, once, through whichever node; an allow-list and its revocations
// decide who may; every other factory identity is refused.
func TestX5CZeroTouchEnrollment(t *testing.T) {
	c := newTestCluster(t, 3)
	c.waitLogFormat()
	nodes := c.running()
	acme := newManufacturer(t, "Acme Sensors")
	c.x5cProvisioner(nodes[0], "factory", acme, true)

	// The cluster's own CA is no manufacturer: refused as a root.
	rootPEM, _ := os.ReadFile(c.pki.RootFile)
	r := c.do(nodes[1], "POST", "/v1/admin/provisioners", map[string]any{"name": "own", "kind": "x5c", "authority": "default",
		"policy": map[string]any{"dns": []string{"*"}}, "x5c": map[string]any{"roots": string(rootPEM), "names": []string{"{serial}.x.example"}}}, c.admin)
	if r.status != http.StatusBadRequest {
		t.Fatalf("our own root as a manufacturer's: %d %s", r.status, r.body)
	}
	for _, tmpl := range []string{"{serial", "{mac}.x.example", "*.{serial}.example", "fixed.devices.example", "{cn}.devices.example",
		"mgmt-{serial}.devices.example", "{cn}-{serial}.devices.example", "a.{serial}.example", "{serial}.x@devices.example", "urn:x:{id}"} {
		r := c.do(nodes[1], "POST", "/v1/admin/provisioners", map[string]any{"name": "bad", "kind": "x5c", "authority": "default",
			"x5c": map[string]any{"roots": acme.rootPEM(), "names": []string{tmpl}}}, c.admin)
		if r.status != http.StatusBadRequest {
			t.Errorf("template %q: %d %s", tmpl, r.status, r.body)
		}
	}

	if r := c.do(nodes[2], "POST", "/v1/admin/provisioners/factory/devices", map[string]any{"ids": []string{"SN001", "SN002", "SN003", "SN004"}}, c.admin); r.status != http.StatusOK {
		t.Fatalf("devices: %d %s", r.status, r.body)
	}

	// SN001 enrolls through a follower; the CSR asks for no names and
	// gets its own.
	k1 := newKey(t)
	dev1 := acme.device(t, "SN001", k1)
	csr1 := csrWithoutNames(t, k1)
	r = c.signX5C(dev1, nodes[1], "factory", csr1)
	if r.status != http.StatusCreated {
		t.Fatalf("enroll SN001: %d %s", r.status, r.body)
	}
	var s signed
	r.decode(t, &s)
	cert := parsePEMCert(t, s.Certificate)
	if len(cert.DNSNames) != 1 || cert.DNSNames[0] != "sn001.devices.example" {
		t.Fatalf("SN001 got %v", cert.DNSNames)
	}
	// The same request through another node: the same certificate; another
	// key: refused, once per device.
	r = c.signX5C(dev1, nodes[2], "factory", csr1)
	var again signed
	r.decode(t, &again)
	if r.status != http.StatusCreated || again.Serial != s.Serial {
		t.Fatalf("SN001 again: %d %s", r.status, r.body)
	}
	if r := c.signX5C(dev1, nodes[0], "factory", csrWithoutNames(t, newKey(t))); r.status != http.StatusConflict || errorCode(t, r) != "device_enrolled" {
		t.Fatalf("SN001 with another key: %d %s", r.status, r.body)
	}

	// Refused: a name the device does not map to; an unlisted device; a
	// device of another manufacturer; an issued certificate posing as a
	// factory one; no certificate; a token provisioner's name.
	k2 := newKey(t)
	dev2 := acme.device(t, "SN002", k2)
	if r := c.signX5C(dev2, nodes[0], "factory", newCSR(t, k2, "sn001.devices.example")); r.status != http.StatusForbidden {
		t.Errorf("SN002 asking for SN001's name: %d %s", r.status, r.body)
	}
	k9 := newKey(t)
	if r := c.signX5C(acme.device(t, "SN009", k9), nodes[0], "factory", csrWithoutNames(t, k9)); r.status != http.StatusForbidden || errorCode(t, r) != "device_not_listed" {
		t.Errorf("unlisted SN009: %d %s", r.status, r.body)
	}
	other := newManufacturer(t, "Acme Sensors") // the same names, another key
	kx := newKey(t)
	if r := c.signX5C(other.device(t, "SN002", kx), nodes[0], "factory", csrWithoutNames(t, kx)); r.status != http.StatusForbidden {
		t.Errorf("another manufacturer's SN002: %d %s", r.status, r.body)
	}
	issued := tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: k1}
	for _, p := range s.Chain {
		issued.Certificate = append(issued.Certificate, parsePEMCert(t, p).Raw)
	}
	if r := c.signX5C(issued, nodes[0], "factory", csrWithoutNames(t, k1)); r.status != http.StatusForbidden {
		t.Errorf("an operational certificate as a factory one: %d %s", r.status, r.body)
	}
	if r := c.do(nodes[0], "POST", "/v1/sign", map[string]string{"csr": string(csr1), "provisioner": "factory"}, ""); r.status != http.StatusUnauthorized {
		t.Errorf("no certificate: %d %s", r.status, r.body)
	}
	if r := c.signX5C(dev2, nodes[0], "default", csrWithoutNames(t, k2)); r.status != http.StatusBadRequest || errorCode(t, r) != "provisioner_kind" {
		t.Errorf("a token provisioner: %d %s", r.status, r.body)
	}

	// IDs are case-insensitive, as the names made of them: "sn002" is
	// SN002, enrolled already.
	if r := c.signX5C(dev2, nodes[1], "factory", csrWithoutNames(t, k2)); r.status != http.StatusCreated {
		t.Fatalf("enroll SN002: %d %s", r.status, r.body)
	}
	kl := newKey(t)
	if r := c.signX5C(acme.device(t, "sn002", kl), nodes[2], "factory", csrWithoutNames(t, kl)); r.status != http.StatusConflict {
		t.Errorf("sn002 after SN002: %d %s", r.status, r.body)
	}
	// A factory certificate for servers only, or with two serial numbers
	// (parsers disagree on which counts), is no device's.
	ks := newKey(t)
	serverOnly := acme.deviceAs(t, &x509.Certificate{Subject: pkix.Name{SerialNumber: "SN004"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ks)
	if r := c.signX5C(serverOnly, nodes[0], "factory", csrWithoutNames(t, ks)); r.status != http.StatusForbidden {
		t.Errorf("a server-only factory certificate: %d %s", r.status, r.body)
	}
	two := acme.deviceAs(t, &x509.Certificate{Subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: []int{2, 5, 4, 5}, Value: "SN009"}, {Type: []int{2, 5, 4, 5}, Value: "SN004"}}}}, ks)
	if r := c.signX5C(two, nodes[0], "factory", csrWithoutNames(t, ks)); r.status != http.StatusForbidden {
		t.Errorf("two serial numbers: %d %s", r.status, r.body)
	}

	// One listed device, three keys at once through three nodes: one
	// certificate.
	k4 := newKey(t)
	dev4 := acme.device(t, "SN004", k4)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for _, tn := range nodes {
		csr := csrWithoutNames(t, newKey(t))
		wg.Go(func() {
			if r := c.signX5C(dev4, tn, "factory", csr); r.status == http.StatusCreated {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("SN004 got %d certificates from three concurrent enrollments", ok)
	}

	// A revoked entry enrolls no more, and its certificate renews no more.
	if r := c.do(nodes[1], "POST", "/v1/admin/provisioners/factory/devices/SN003/revoke", nil, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke SN003: %d %s", r.status, r.body)
	}
	k3 := newKey(t)
	if r := c.signX5C(acme.device(t, "SN003", k3), nodes[2], "factory", csrWithoutNames(t, k3)); r.status != http.StatusForbidden || errorCode(t, r) != "device_revoked" {
		t.Errorf("revoked SN003: %d %s", r.status, r.body)
	}
	h := c.holderOf(k1, s)
	if r := c.mtls(h, nodes[2], "POST", "/v1/renew", nil, ""); r.status != http.StatusCreated {
		t.Fatalf("SN001 renews: %d %s", r.status, r.body)
	} else {
		var next signed
		r.decode(t, &next)
		h = c.holderOf(k1, next)
	}
	if r := c.do(nodes[0], "POST", "/v1/admin/provisioners/factory/devices/SN001/revoke", nil, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke SN001: %d %s", r.status, r.body)
	}
	if r := c.mtls(h, nodes[1], "POST", "/v1/renew", nil, ""); r.status != http.StatusForbidden || errorCode(t, r) != "device_revoked" {
		t.Errorf("renewal after SN001's revocation: %d %s", r.status, r.body)
	}
	if r := c.do(nodes[0], "POST", "/v1/admin/provisioners/factory/devices", map[string]any{"ids": []string{"SN005", "SN001"}}, c.admin); r.status != http.StatusForbidden {
		t.Errorf("listing revoked SN001 again: %d %s", r.status, r.body)
	}

	// The registry: searchable, each device with what it enrolled for;
	// certificates by device ID.
	var list struct{ Devices []fsm.Device }
	c.do(nodes[2], "GET", "/v1/admin/provisioners/factory/devices?prefix=SN00&limit=2", nil, c.admin).decode(t, &list)
	if len(list.Devices) != 2 || list.Devices[0].ID != "sn001" || list.Devices[1].ID != "sn002" { // kept lowercase
		t.Fatalf("devices page: %+v", list.Devices)
	}
	var d1 struct {
		Serial  string
		Revoked bool
	}
	c.do(nodes[1], "GET", "/v1/admin/provisioners/factory/devices/SN001", nil, c.admin).decode(t, &d1)
	if d1.Serial != s.Serial || !d1.Revoked {
		t.Errorf("SN001: %+v", d1)
	}
	var certs struct{ Certs []struct{ Serial string } }
	c.do(nodes[1], "GET", "/v1/admin/certs?property=device_id%3DSN001", nil, c.admin).decode(t, &certs)
	if len(certs.Certs) != 2 {
		t.Errorf("certificates of SN001 (enrolled, renewed): %+v", certs.Certs)
	}
	// Pages: a full one names the next.
	var batch []string
	for i := range 1200 {
		batch = append(batch, fmt.Sprintf("B%04d", i))
	}
	if r := c.do(nodes[0], "POST", "/v1/admin/provisioners/factory/devices", map[string]any{"ids": batch}, c.admin); r.status != http.StatusOK {
		t.Fatalf("1,200 devices: %d %s", r.status, r.body)
	}
	var page struct {
		Devices []fsm.Device
		Next    string
	}
	c.do(nodes[1], "GET", "/v1/admin/provisioners/factory/devices?prefix=B&limit=5000", nil, c.admin).decode(t, &page)
	if len(page.Devices) != 1000 || page.Next != "b0999" {
		t.Fatalf("first page: %d devices, next %q", len(page.Devices), page.Next)
	}
	page.Next = ""
	c.do(nodes[1], "GET", "/v1/admin/provisioners/factory/devices?prefix=B&after=B0999", nil, c.admin).decode(t, &page)
	if len(page.Devices) != 200 || page.Next != "" {
		t.Fatalf("last page: %d devices, next %q", len(page.Devices), page.Next)
	}
	if r := c.do(nodes[1], "GET", "/v1/admin/provisioners/factory/devices/SN999", nil, c.admin); r.status != http.StatusNotFound {
		t.Errorf("unknown device: %d %s", r.status, r.body)
	}

	// Only a factory enrollment names a certificate's device.
	if r := c.do(nodes[0], "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"spoof.example"}, "properties": map[string]string{"device_id": "sn001"}}, c.admin); r.status != http.StatusBadRequest {
		t.Errorf("a token naming a device: %d %s", r.status, r.body)
	}

	// A device value makes a name, never an address, whatever the policy:
	// a name is the ID under a domain.
	r = c.do(nodes[0], "POST", "/v1/admin/provisioners", map[string]any{"name": "bare", "kind": "x5c", "authority": "default",
		"policy": map[string]any{"dns": []string{"*"}, "ip": []string{"10.0.0.0/8"}},
		"x5c":    map[string]any{"roots": acme.rootPEM(), "names": []string{"{serial}"}}}, c.admin)
	if r.status != http.StatusBadRequest {
		t.Fatalf("a bare {serial} name: %d %s", r.status, r.body)
	}
}

func csrWithoutNames(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// Zero-touch over EST with curl and openssl: the device's factory
// certificate in the TLS handshake is its credential at the x5c
// provisioner's path; its operational certificate then reenrolls.
func TestX5COverESTWithCurl(t *testing.T) {
	requireOpenSSL(t)
	requireTool(t, "curl", "curl")
	c := newTestCluster(t, 3)
	c.waitLogFormat()
	nodes := c.running()
	acme := newManufacturer(t, "Acme Gateways")
	c.x5cProvisioner(nodes[0], "gateways", acme, false)
	dir := t.TempDir()
	rootPEM, _ := os.ReadFile(c.pki.RootFile)
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), rootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := writeIdentity(t, dir, "idevid", acme.device(t, "GW-7", newKey(t)))
	url := func(tn *testNode, op string) string {
		return "https://" + tn.node.APIAddr() + "/.well-known/est/gateways/" + op
	}
	sh(t, dir, "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ldevid.key -subj /CN=gw-7.devices.example -outform DER | openssl base64 > ldevid.csr.b64")
	enroll := func(tn *testNode, op string, extra ...string) int {
		status, _ := estCurl(t, dir, append(append([]string{"--data-binary", "@ldevid.csr.b64", "-H", "Content-Type: application/pkcs10"}, extra...), url(tn, op))...)
		return status
	}
	if status := enroll(nodes[1], "simpleenroll"); status != http.StatusUnauthorized {
		t.Fatalf("no factory certificate: %d %s", status, readFile(t, dir, "body.out"))
	}
	if status := enroll(nodes[1], "simpleenroll", "--cert", certFile, "--key", keyFile); status != http.StatusOK {
		t.Fatalf("simpleenroll with the factory certificate: %d %s", status, readFile(t, dir, "body.out"))
	}
	sh(t, dir, "openssl base64 -d -in body.out | openssl pkcs7 -inform DER -print_certs -out ldevid.pem")
	ldevid := parsePEMCert(t, readFile(t, dir, "ldevid.pem"))
	if len(ldevid.DNSNames) != 1 || ldevid.DNSNames[0] != "gw-7.devices.example" {
		t.Fatalf("issued %v", ldevid.DNSNames)
	}
	// Once: the same device with the same request through another node
	// gets that certificate again; a factory certificate on the token
	// path is no credential.
	if status := enroll(nodes[2], "simpleenroll", "--cert", certFile, "--key", keyFile); status != http.StatusOK {
		t.Fatalf("the same enrollment again: %d %s", status, readFile(t, dir, "body.out"))
	}
	sh(t, dir, "openssl base64 -d -in body.out | openssl pkcs7 -inform DER -print_certs -out again.pem")
	if parsePEMCert(t, readFile(t, dir, "again.pem")).SerialNumber.Cmp(ldevid.SerialNumber) != 0 {
		t.Fatal("a second certificate for one device")
	}
	status, _ := estCurl(t, dir, "--data-binary", "@ldevid.csr.b64", "-H", "Content-Type: application/pkcs10", "--cert", certFile, "--key", keyFile,
		"https://"+nodes[0].node.APIAddr()+"/.well-known/est/simpleenroll")
	if status != http.StatusUnauthorized {
		t.Errorf("factory certificate on the token path: %d %s", status, readFile(t, dir, "body.out"))
	}
	// The operational certificate reenrolls at the same path.
	if status := enroll(nodes[0], "simplereenroll", "--cert", "ldevid.pem", "--key", "ldevid.key"); status != http.StatusOK {
		t.Fatalf("simplereenroll: %d %s", status, readFile(t, dir, "body.out"))
	}
	sh(t, dir, "openssl base64 -d -in body.out | openssl pkcs7 -inform DER -print_certs -out renewed.pem")
	if out := sh(t, dir, "openssl x509 -in renewed.pem -noout -ext subjectAltName"); !strings.Contains(out, "DNS:gw-7.devices.example") {
		t.Fatalf("renewed: %s", out)
	}
}

// factoryAgent runs an agent with no token: its bundle names the x5c
// provisioner, and the factory certificate is its bootstrap identity.
func (c *testCluster) factoryAgentConfig(addr, prov, certFile, keyFile string) agent.Config {
	c.t.Helper()
	cfg, f := c.newAgentConfigIn(c.t.TempDir(), addr, "")
	b, err := agent.ReadBundle(cfg.BundleFile)
	if err != nil {
		c.t.Fatal(err)
	}
	b.Provisioner = prov
	if err := b.Write(f.path("bundle.json")); err != nil {
		c.t.Fatal(err)
	}
	cfg.BootstrapCert, cfg.BootstrapKey = certFile, keyFile
	return cfg
}

// waitAgentCert waits for the agent's files to hold a certificate that
// verifies and for the number of certificates written to reach n.
func waitAgentCerts(t *testing.T, cfg agent.Config, writes *atomic.Int32, n int32) *x509.Certificate {
	t.Helper()
	testwait.For(t, 60*time.Second, fmt.Sprintf("the agent to write %d certificates", n), func() bool { return writes.Load() >= n })
	leaf, err := checkAgentFiles(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// The agent enrolls a device by its factory certificate through the load
// balancer, then renews with the operational one; a second device of the
// same serial (a cloned factory identity with another key) is refused.
func TestAgentEnrollsByFactoryCertificate(t *testing.T) {
	c, proxy := agentCluster(t, 6*time.Second)
	c.waitLogFormat()
	acme := newManufacturer(t, "Acme Meters")
	c.x5cProvisionerTTL(c.nodes[0], "meters", acme, true, "6s")
	if r := c.do(c.nodes[1], "POST", "/v1/admin/provisioners/meters/devices", map[string]any{"ids": []string{"M-1"}}, c.admin); r.status != http.StatusOK {
		t.Fatalf("devices: %d %s", r.status, r.body)
	}
	certFile, keyFile := writeIdentity(t, t.TempDir(), "idevid", acme.device(t, "M-1", newKey(t)))
	cfg := c.factoryAgentConfig(proxy.URL(), "meters", certFile, keyFile)
	var writes atomic.Int32
	cfg.AfterWrite = func() { writes.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runAgent(t, ctx, cfg)
	leaf := waitAgentCerts(t, cfg, &writes, 1)
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "m-1.devices.example" {
		t.Fatalf("enrolled as %v", leaf.DNSNames)
	}
	if renewed := waitAgentCerts(t, cfg, &writes, 2); renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("no renewal")
	}
	cancel()

	// A clone: the same serial number under the same manufacturer, another
	// key. The device enrolled already: stopped for good.
	cloneCert, cloneKey := writeIdentity(t, t.TempDir(), "clone", acme.device(t, "M-1", newKey(t)))
	clone := c.factoryAgentConfig(proxy.URL(), "meters", cloneCert, cloneKey)
	a, err := agent.New(clone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Check(context.Background()); !errors.Is(err, agent.ErrStopped) || !strings.Contains(err.Error(), "device_enrolled") {
		t.Fatalf("a clone of M-1: %v", err)
	}
}

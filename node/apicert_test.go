package node

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// servedLeaf is the certificate tn's API listener shows a client that
// trusts the authority's root; the handshake must verify for name.
func (c *testCluster) servedLeaf(tn *testNode, name string) (*x509.Certificate, error) {
	cfg := c.client.Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.ServerName = name
	conn, err := tls.Dial("tcp", tn.node.APIAddr(), cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func serverProvisioner(ttl time.Duration) *ProvisionerConfig {
	return &ProvisionerConfig{Provisioner: fsm.Provisioner{Name: "servers", Kind: fsm.KindServer, Authority: "default",
		Policy: fsm.Policy{DNS: []string{"ca.test", "*.servers.test", "ca.example.test"}, IP: []string{"127.0.0.1/32"}, EKU: "server",
			DefaultTTL: ttl, MaxTTL: ttl}}}
}

// Each server gets its own API certificate from the cluster, for the
// provisioner's names and its own address, renews it two thirds through
// its life, and serves the stored one after a restart without a quorum.
func TestServersGetTheirOwnAPICertificatesFromTheCluster(t *testing.T) {
	const ttl = 15 * time.Second
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) {
		c.provisioners = append(c.provisioners, serverProvisioner(ttl))
		c.configure = func(cfg *Config) { cfg.TLSProvisioner = "servers" }
	})
	issuedTo := map[string]*x509.Certificate{}
	for _, tn := range c.nodes {
		var leaf *x509.Certificate
		testwait.For(t, 20*time.Second, tn.cfg.NodeName+" to serve a certificate of the cluster", func() bool {
			l, err := c.servedLeaf(tn, "ca.test")
			if err == nil && l.Subject.CommonName == "ca.test" {
				leaf = l
			}
			return leaf != nil
		})
		if !slices.Equal(leaf.DNSNames, []string{"ca.test", "ca.example.test"}) || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal([]byte{127, 0, 0, 1}) {
			t.Errorf("%s: names %v %v, want ca.test, ca.example.test and its address 127.0.0.1 (no wildcard pattern)", tn.cfg.NodeName, leaf.DNSNames, leaf.IPAddresses)
		}
		if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
			t.Errorf("%s: EKU %v, want server authentication only", tn.cfg.NodeName, leaf.ExtKeyUsage)
		}
		rec := c.certRecord(tn, fmt.Sprintf("%x", leaf.SerialNumber))
		if rec.Provisioner != "servers" || rec.Requester != "node:"+tn.cfg.NodeName {
			t.Errorf("%s: record says provisioner %q requester %q", tn.cfg.NodeName, rec.Provisioner, rec.Requester)
		}
		issuedTo[tn.cfg.NodeName] = leaf
	}
	if issuedTo["n1"].SerialNumber.Cmp(issuedTo["n2"].SerialNumber) == 0 || issuedTo["n2"].SerialNumber.Cmp(issuedTo["n3"].SerialNumber) == 0 {
		t.Fatal("two servers serve the same certificate")
	}
	for _, tn := range c.nodes {
		if r := c.do(tn, "GET", "/v1/ready", nil, ""); r.status != http.StatusOK {
			t.Errorf("%s not ready with its certificate: %d %s", tn.cfg.NodeName, r.status, r.body)
		}
	}

	// Renewed two thirds through its life, for a new key.
	n1 := c.nodes[0]
	var renewed *x509.Certificate
	testwait.For(t, 2*ttl, "n1 to serve a renewed certificate", func() bool {
		l, err := c.servedLeaf(n1, "ca.test")
		if err == nil && l.SerialNumber.Cmp(issuedTo["n1"].SerialNumber) != 0 {
			renewed = l
		}
		return renewed != nil
	})
	if renewed.NotBefore.After(issuedTo["n1"].NotAfter) {
		t.Errorf("renewed only after expiry: %s > %s", renewed.NotBefore, issuedTo["n1"].NotAfter)
	}
	if pub, _ := x509.MarshalPKIXPublicKey(renewed.PublicKey); slices.Equal(pub, mustPKIX(t, issuedTo["n1"])) {
		t.Error("the renewed certificate kept the old key")
	}

	// Without a quorum, a restarted server serves what it stored.
	stored, err := loadAPIPair(filepath.Join(n1.cfg.DataDir, apiCertFile), filepath.Join(n1.cfg.DataDir, apiKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range c.nodes {
		c.Stop(tn)
	}
	c.Restart(n1)
	if l, err := c.servedLeaf(n1, "ca.test"); err != nil || l.SerialNumber.Cmp(stored.Leaf.SerialNumber) != 0 {
		t.Fatalf("restarted without a quorum: serves %v (%v), want the stored %x", l, err, stored.Leaf.SerialNumber)
	}
}

func mustPKIX(t *testing.T, c *x509.Certificate) []byte {
	t.Helper()
	b, err := x509.MarshalPKIXPublicKey(c.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// certRecord reads a certificate's record through tn.
func (c *testCluster) certRecord(tn *testNode, serial string) apitypes.Cert {
	c.t.Helper()
	r := c.do(tn, "GET", "/v1/certs/"+serial, nil, "")
	if r.status != http.StatusOK {
		c.t.Fatalf("record %s: %d %s", serial, r.status, r.body)
	}
	var rec apitypes.Cert
	if err := json.Unmarshal(r.body, &rec); err != nil {
		c.t.Fatal(err)
	}
	return rec
}

// A node without any certificate file serves a placeholder no client
// trusts, and is not ready, until the cluster issues its certificate.
func TestANodeWithoutCertificateFilesIsReadyOnlyWithItsIssuedCertificate(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.provisioners = append(c.provisioners, serverProvisioner(time.Hour))
	})
	// A provisioner that does not exist: the node never gets a certificate.
	n2 := c.addNodeWith(func(cfg *Config) { cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSProvisioner = "", "", "missing" })
	c.WaitConverged()
	if _, err := c.servedLeaf(n2, "ca.test"); err == nil {
		t.Fatal("a client verified the placeholder")
	}
	if code := c.readyCode(n2); code != "no_api_certificate" {
		t.Fatalf("ready without a certificate: %q, want no_api_certificate", code)
	}
	c.Stop(n2)
	n2.cfg.TLSProvisioner = "servers"
	c.Restart(n2)
	testwait.For(t, 20*time.Second, "n2 to serve its issued certificate and be ready", func() bool {
		_, err := c.servedLeaf(n2, "ca.test")
		return err == nil && c.readyCode(n2) == ""
	})
}

// readyCode is /v1/ready's error code on tn, "" when ready. The client
// skips verification: a load balancer's health check does too.
func (c *testCluster) readyCode(tn *testNode) string {
	c.t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + tn.node.APIAddr() + "/v1/ready")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&e)
	return e.Error.Code
}

// Attacks on the server provisioner from outside: no device gets a server's
// name, address or a wildcard over them; no token names the provisioner;
// the holder of a server's API key cannot renew its certificate; an admin
// cannot make the provisioner reserve everything.
func TestServerNamesAndCertificatesStayWithTheServers(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		wild := authority.DefaultPolicy()
		wild.AllowWildcard, wild.CommonName = true, []string{"*"}
		c.provisioners = []*ProvisionerConfig{
			{Provisioner: fsm.Provisioner{Name: "default", Kind: fsm.KindEnrollmentToken, Authority: "default", Policy: authority.DefaultPolicy()}},
			{Provisioner: fsm.Provisioner{Name: "wild", Kind: fsm.KindEnrollmentToken, Authority: "default", Policy: wild}},
			serverProvisioner(time.Hour),
		}
		c.configure = func(cfg *Config) { cfg.TLSProvisioner = "servers" }
	})
	n1 := c.nodes[0]
	testwait.For(t, 20*time.Second, "n1 to serve its issued certificate", func() bool {
		_, err := c.servedLeaf(n1, "ca.test")
		return err == nil
	})
	before := c.certCount(n1)
	for _, names := range [][]string{{"ca.test"}, {"ok.test", "CA.test"}, {"n7.servers.test"}, {"127.0.0.1"}, {"*.example.test"}, {"*.servers.test"}} {
		r := c.do(n1, "POST", "/v1/admin/tokens", map[string]any{"provisioner": "wild", "sans": names, "ttl": "1h"}, c.admin)
		if r.status != http.StatusCreated {
			t.Logf("token for %v refused at mint: %d %s", names, r.status, r.body)
			continue
		}
		var tok struct{ Token string }
		r.decode(t, &tok)
		r = c.do(n1, "POST", "/v1/sign", map[string]string{"csr": string(csrNames(t, names[0], names...)), "token": tok.Token}, "")
		if r.status != http.StatusForbidden || r.errorCode() != "san_not_allowed" || !strings.Contains(string(r.body), "reserved") {
			t.Errorf("a device certificate for %v: %d %s, want 403 san_not_allowed", names, r.status, r.body)
		}
	}
	// A CN that names the server, beside an allowed SAN.
	r := c.do(n1, "POST", "/v1/admin/tokens", map[string]any{"provisioner": "wild", "sans": []string{"ok.test", "ca.test"}, "ttl": "1h"}, c.admin)
	if r.status != http.StatusCreated {
		t.Fatalf("token for ok.test and ca.test: %d %s", r.status, r.body)
	}
	var tok struct{ Token string }
	r.decode(t, &tok)
	csr := csrNames(t, "ca.test", "ok.test")
	if r := c.do(n1, "POST", "/v1/sign", map[string]string{"csr": string(csr), "token": tok.Token}, ""); r.status != http.StatusForbidden || !strings.Contains(string(r.body), "reserved") {
		t.Errorf("a device certificate with the server's name as CN: %d %s, want 403 for a reserved name", r.status, r.body)
	}
	if got := c.certCount(n1); got != before {
		t.Fatalf("refused requests changed the certificate log: %d records, was %d", got, before)
	}
	// The control: other names still issue.
	c.sign(n1, c.mintToken(n1, "1h", "device.test"), newCSR(t, newKey(t), "device.test"))

	if r := c.do(n1, "POST", "/v1/admin/tokens", map[string]any{"provisioner": "servers", "sans": []string{"ca.test"}, "ttl": "1h"}, c.admin); r.status/100 != 4 {
		t.Errorf("a token for the server provisioner: %d %s", r.status, r.body)
	}

	// The holder of the API key (a copy of the data directory's key file)
	// cannot extend the certificate.
	pair, err := loadAPIPair(filepath.Join(n1.cfg.DataDir, apiCertFile), filepath.Join(n1.cfg.DataDir, apiKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	thief := &holder{key: pair.PrivateKey.(crypto.Signer), cert: pair.Leaf}
	if r := c.mtls(thief, n1, "POST", "/v1/renew", nil, ""); r.status != http.StatusForbidden {
		t.Errorf("renewal of a server certificate by its key's holder: %d %s", r.status, r.body)
	}

	for _, bad := range []apitypes.Policy{
		{DNS: []string{"*"}, EKU: "server"},
		{DNS: []string{".example"}, EKU: "server"},
		{DNS: []string{"*.test"}, EKU: "server"},
		{IP: []string{"0.0.0.0/0"}, EKU: "server"},
		{DNS: []string{"ca.example"}, EKU: "both"},
		{DNS: []string{"ca.example"}, EKU: "server", URI: []string{"spiffe://x/*"}},
		{DNS: []string{"ca.example"}, EKU: "server", RenewGrace: "1h"},
		{IP: []string{"0.0.0.0/1"}, EKU: "server"},
		{DNS: []string{"ca.example"}, EKU: "server", KeyTypes: []string{"Ed25519"}},
	} {
		p := apitypes.Provisioner{Name: "servers2", Kind: fsm.KindServer, Authority: "default", Policy: bad}
		if r := c.do(n1, "POST", "/v1/admin/provisioners", p, c.admin); r.status != http.StatusBadRequest {
			t.Errorf("server provisioner with %+v: %d %s, want 400", bad, r.status, r.body)
		}
	}
}

// csrNames is a CSR for a new key with common name cn and names as SANs.
func csrNames(t *testing.T, cn string, names ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// A server certificate revoked (its key leaked: here its holder revokes
// it) is replaced within seconds, and the node is not ready meanwhile; a
// provisioner never changes kind to or from server, so a stolen server
// certificate cannot become renewable that way.
func TestARevokedAPICertificateIsReplaced(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.provisioners = []*ProvisionerConfig{serverProvisioner(time.Hour),
			{Provisioner: fsm.Provisioner{Name: "default", Kind: fsm.KindEnrollmentToken, Authority: "default", Policy: authority.DefaultPolicy()}}}
		c.configure = func(cfg *Config) { cfg.TLSProvisioner = "servers" }
	})
	n1 := c.nodes[0]
	testwait.For(t, 20*time.Second, "n1 to serve its issued certificate", func() bool {
		_, err := c.servedLeaf(n1, "ca.test")
		return err == nil && c.readyCode(n1) == ""
	})
	pair, err := loadAPIPair(filepath.Join(n1.cfg.DataDir, apiCertFile), filepath.Join(n1.cfg.DataDir, apiKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	thief := &holder{key: pair.PrivateKey.(crypto.Signer), cert: pair.Leaf}
	serial := fmt.Sprintf("%x", pair.Leaf.SerialNumber)
	body, _ := json.Marshal(map[string]string{"serial": serial, "reason": "keyCompromise"})
	if r := c.mtls(thief, n1, "POST", "/v1/revoke", body, ""); r.status != http.StatusOK {
		t.Fatalf("revocation of the API certificate by its holder: %d %s", r.status, r.body)
	}
	testwait.For(t, 20*time.Second, "n1 to serve a new certificate in place of the revoked one", func() bool {
		l, err := c.servedLeaf(n1, "ca.test")
		return err == nil && l.SerialNumber.Cmp(pair.Leaf.SerialNumber) != 0 && c.readyCode(n1) == ""
	})

	// The server provisioner cannot become a token provisioner (whose
	// certificates their holders renew), nor the other way round.
	p := apitypes.Provisioner{Name: "servers", Kind: fsm.KindEnrollmentToken, Authority: "default", Version: 1,
		Policy: apitypes.Policy{DNS: []string{"ca.test"}, EKU: "server", DefaultTTL: "1h", MaxTTL: "1h"}}
	if r := c.do(n1, "PUT", "/v1/admin/provisioners/servers", p, c.admin); r.status != http.StatusBadRequest {
		t.Errorf("server provisioner made a token provisioner: %d %s", r.status, r.body)
	}
	p = apitypes.Provisioner{Name: "default", Kind: fsm.KindServer, Authority: "default", Version: 1,
		Policy: apitypes.Policy{DNS: []string{"x.test"}, EKU: "server", DefaultTTL: "1h", MaxTTL: "1h"}}
	if r := c.do(n1, "PUT", "/v1/admin/provisioners/default", p, c.admin); r.status != http.StatusBadRequest {
		t.Errorf("token provisioner made a server provisioner: %d %s", r.status, r.body)
	}
	// Deleted and made again as a token provisioner under the same name,
	// it still renews no certificate a node was issued.
	if r := c.do(n1, "DELETE", "/v1/admin/provisioners/servers", nil, c.admin); r.status/100 != 2 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	p = apitypes.Provisioner{Name: "servers", Kind: fsm.KindEnrollmentToken, Authority: "default",
		Policy: apitypes.Policy{DNS: []string{"*"}, IP: []string{"0.0.0.0/0"}, EKU: "both", DefaultTTL: "1h", MaxTTL: "1h"}}
	if r := c.do(n1, "POST", "/v1/admin/provisioners", p, c.admin); r.status != http.StatusCreated {
		t.Fatalf("recreate: %d %s", r.status, r.body)
	}
	now, err := loadAPIPair(filepath.Join(n1.cfg.DataDir, apiCertFile), filepath.Join(n1.cfg.DataDir, apiKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.mtls(&holder{key: now.PrivateKey.(crypto.Signer), cert: now.Leaf}, n1, "POST", "/v1/renew", nil, ""); r.status != http.StatusForbidden {
		t.Errorf("a node's certificate renewed by its key's holder through a look-alike provisioner: %d %s", r.status, r.body)
	}
}

// certCount is how many certificates the log holds, through tn.
func (c *testCluster) certCount(tn *testNode) int {
	c.t.Helper()
	r := c.do(tn, "GET", "/v1/admin/certs?limit=1000", nil, c.admin)
	if r.status != http.StatusOK {
		c.t.Fatalf("search: %d %s", r.status, r.body)
	}
	var out struct{ Certs []json.RawMessage }
	r.decode(c.t, &out)
	return len(out.Certs)
}

// A certificate in the data directory is served only if the cluster's
// state records it, byte for byte, as this node's: not a self-signed one
// someone put there, and not one a restored snapshot never heard of; each
// is replaced by one the cluster issues.
func TestAStoredAPICertificateIsServedOnlyOnItsRecordsWord(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.provisioners = append(c.provisioners, serverProvisioner(time.Hour))
		c.configure = func(cfg *Config) { cfg.TLSProvisioner = "servers" }
	})
	n1 := c.nodes[0]
	var first *x509.Certificate
	testwait.For(t, 20*time.Second, "n1 to serve its issued certificate", func() bool {
		l, err := c.servedLeaf(n1, "ca.test")
		first = l
		return err == nil && c.readyCode(n1) == ""
	})
	snap := c.do(n1, "GET", "/v1/admin/snapshot", nil, c.admin)
	if snap.status != http.StatusOK {
		t.Fatalf("snapshot: %d %s", snap.status, snap.body)
	}

	// A self-signed certificate for the same names, ten years long.
	c.Stop(n1)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: first.SerialNumber, Subject: pkix.Name{CommonName: "ca.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		DNSNames: first.DNSNames, IPAddresses: first.IPAddresses, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(n1.cfg.DataDir, apiKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	os.WriteFile(filepath.Join(n1.cfg.DataDir, apiCertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	c.Restart(n1)
	if l, err := c.servedLeaf(n1, "127.0.0.1"); err != nil || bytes.Equal(l.Raw, der) {
		t.Fatalf("after a restart n1 serves the planted certificate (or nothing a client trusts: %v)", err)
	}
	var second *x509.Certificate
	testwait.For(t, 20*time.Second, "n1 to serve a certificate of the cluster again", func() bool {
		l, err := c.servedLeaf(n1, "ca.test")
		if err == nil && l.SerialNumber.Cmp(first.SerialNumber) != 0 && c.readyCode(n1) == "" {
			second = l
		}
		return second != nil
	})

	// A snapshot from before that certificate: it has no record there.
	if r := c.do(n1, "POST", "/v1/admin/snapshot", snap.body, c.admin); r.status/100 != 2 {
		t.Fatalf("restore: %d %s", r.status, r.body)
	}
	testwait.For(t, 20*time.Second, "n1 to serve a certificate the restored state records", func() bool {
		l, err := c.servedLeaf(n1, "ca.test")
		if err != nil || l.SerialNumber.Cmp(second.SerialNumber) == 0 || c.readyCode(n1) != "" {
			return false
		}
		r, err := c.try(n1, "GET", "/v1/certs/"+fmt.Sprintf("%x", l.SerialNumber), nil, "")
		return err == nil && r.status == http.StatusOK
	})
}

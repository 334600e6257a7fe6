package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestParseStat(t *testing.T) {
	// A command name with a space and a parenthesis; utime 150, stime 50.
	line := "4242 (my (ca) x) S 1 4242 4242 0 -1 4194304 100 0 0 0 150 50 0 0 20 0 8 0 1000 0 0"
	got, err := parseStat(line)
	if err != nil || got != 2*time.Second {
		t.Fatalf("parseStat = %v, %v; want 2s", got, err)
	}
	if _, err := parseStat("4242 (short) S 1"); err == nil {
		t.Error("a short line parsed")
	}
	if _, err := ProcCPU(os.Getpid()); err != nil {
		t.Errorf("ProcCPU(self): %v", err)
	}
}

// stepCAConfig is the part of ca.json the test reads back.
type stepCAConfig struct {
	Root, Crt, Key, Address string
	DNSNames                []string
	DB                      struct{ Type, DataSource string }
	Authority               struct {
		Provisioners []struct {
			Type, Name string
			Key        jose.JSONWebKey
		}
	}
}

func readStepCA(t *testing.T, dir string) stepCAConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "config", "ca.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c stepCAConfig
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The step-ca configuration is what step-ca reads (a chain, an
// unencrypted intermediate key, a JWK provisioner, a badger database) and
// the harness's tokens verify with the provisioner key it holds, with the
// claims step-ca checks.
func TestStepCAConfigAndToken(t *testing.T) {
	dir := t.TempDir()
	rootFile, prov, err := writeStepCA(dir, "127.0.0.1:9000")
	if err != nil {
		t.Fatal(err)
	}
	c := readStepCA(t, dir)
	if c.Root != rootFile || c.Address != "127.0.0.1:9000" || len(c.DNSNames) != 1 || c.DNSNames[0] != "127.0.0.1" {
		t.Errorf("ca.json: root %q address %q dnsNames %q", c.Root, c.Address, c.DNSNames)
	}
	if c.DB.Type != "badgerv2" || c.DB.DataSource == "" {
		t.Errorf("db %+v", c.DB)
	}
	root, inter := readCert(t, c.Root), readCert(t, c.Crt)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	if _, err := inter.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("intermediate: %v", err)
	}
	kb, _ := os.ReadFile(c.Key)
	block, _ := pem.Decode(kb)
	if block == nil || block.Type != "EC PRIVATE KEY" {
		t.Fatalf("intermediate key: %q", kb)
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err != nil || !k.PublicKey.Equal(inter.PublicKey) {
		t.Errorf("intermediate key does not match its certificate (%v)", err)
	}
	if len(c.Authority.Provisioners) != 1 {
		t.Fatalf("provisioners: %+v", c.Authority.Provisioners)
	}
	p := c.Authority.Provisioners[0]
	if p.Type != "JWK" || p.Name != prov.Name || p.Key.KeyID != prov.KID || !p.Key.IsPublic() {
		t.Errorf("provisioner %s %s kid %s public %v", p.Type, p.Name, p.Key.KeyID, p.Key.IsPublic())
	}

	now := time.Now()
	tok, err := prov.token("https://127.0.0.1:9000", "d1.bench.example", now)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if kid := parsed.Headers[0].KeyID; kid != p.Key.KeyID {
		t.Errorf("kid %q, provisioner's %q", kid, p.Key.KeyID)
	}
	var claims struct {
		jwt.Claims
		SANs []string `json:"sans"`
	}
	if err := parsed.Claims(p.Key.Key, &claims); err != nil {
		t.Fatalf("the token does not verify with the provisioner key of ca.json: %v", err)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: p.Name, Subject: "d1.bench.example",
		AnyAudience: jwt.Audience{"https://127.0.0.1:9000/1.0/sign"}, Time: now}, 0); err != nil {
		t.Error(err)
	}
	if claims.ID == "" || claims.IssuedAt != nil || len(claims.SANs) != 1 || claims.SANs[0] != "d1.bench.example" {
		t.Errorf("jti %q iat %v sans %q", claims.ID, claims.IssuedAt, claims.SANs)
	}
	again, _ := prov.token("https://127.0.0.1:9000", "d1.bench.example", now)
	if again == tok {
		t.Error("two tokens for one name are the same (jti)")
	}
}

func TestCFSSLConfig(t *testing.T) {
	dir := t.TempDir()
	caFile, err := writeCFSSL(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ca := readCert(t, caFile); !ca.IsCA {
		t.Error("the CFSSL CA is not a CA")
	}
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	var cfg struct {
		Signing struct {
			Default struct {
				Expiry string
				Usages []string
			}
		}
	}
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Signing.Default.Expiry != "24h" || len(cfg.Signing.Default.Usages) == 0 {
		t.Errorf("config.json %s (%v)", b, err)
	}
}

// issue is the fake CAs' signing: the certificate for csrPEM's key and
// names, from a throwaway CA.
func issue(t *testing.T, csrPEM string) (string, []string) {
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil {
		return "", nil
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		return "", nil
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: csr.Subject.CommonName},
		DNSNames: csr.DNSNames, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, csr.PublicKey, key)
	if err != nil {
		t.Error(err)
		return "", nil
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), csr.DNSNames
}

// The fleet drives step-ca's and CFSSL's enrollment APIs, here fakes that
// check what the real ones check of a request, through the same run as
// quorumca's, and reports CPU per certificate of a process.
func TestFleetDrivesPeers(t *testing.T) {
	// step-ca: {csr, ott}, a JWT of the provisioner for the CSR's name,
	// answered with {crt}.
	stepDir := t.TempDir()
	_, prov, err := writeStepCA(stepDir, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pub := readStepCA(t, stepDir).Authority.Provisioners[0].Key
	step := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			w.Write([]byte(`{"status":"ok"}`))
			return
		}
		var req struct{ CSR, OTT string }
		if r.URL.Path != "/1.0/sign" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, `{"status":400}`, http.StatusBadRequest)
			return
		}
		var claims jwt.Claims
		tok, err := jwt.ParseSigned(req.OTT, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil || tok.Claims(pub.Key, &claims) != nil || claims.Issuer != prov.Name ||
			!claims.Audience.Contains("https://"+r.Host+"/1.0/sign") {
			http.Error(w, `{"status":401}`, http.StatusUnauthorized)
			return
		}
		crt, names := issue(t, req.CSR)
		if crt == "" || len(names) != 1 || names[0] != claims.Subject {
			http.Error(w, `{"status":400}`, http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"crt": crt, "ca": crt, "certChain": []string{crt}})
	}))
	defer step.Close()
	stepRoot := filepath.Join(t.TempDir(), "server.pem")
	os.WriteFile(stepRoot, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: step.Certificate().Raw}), 0o644)

	// CFSSL: {certificate_request} over plain HTTP, answered with
	// {success, result: {certificate}}.
	cfssl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			CSR string `json:"certificate_request"`
		}
		if r.URL.Path == "/api/v1/cfssl/health" {
			w.Write([]byte(`{"success":true}`))
			return
		}
		if r.URL.Path != "/api/v1/cfssl/sign" || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, `{"success":false,"errors":[{"code":1000}]}`, http.StatusBadRequest)
			return
		}
		crt, _ := issue(t, req.CSR)
		if crt == "" {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"success":false,"errors":[{"code":5100,"message":"no"}]}`))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"success": true, "result": map[string]string{"certificate": crt}})
	}))
	defer cfssl.Close()
	cfsslDir := t.TempDir()
	caFile, err := writeCFSSL(cfsslDir)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []Config{
		{Addr: step.URL, CAFile: stepRoot, peer: prov.peer()},
		{Addr: cfssl.URL, CAFile: caFile, peer: cfsslPeer()},
	} {
		c.Devices, c.Concurrency, c.KeyPool, c.Duration, c.CAPid = 40, 4, 4, 10*time.Second, os.Getpid()
		r, err := Run(context.Background(), c)
		if err != nil {
			t.Fatalf("%s: %v", c.peer.name, err)
		}
		if r.Requests != 40 || r.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors %v", c.peer.name, r.Requests, r.Errors, r.ErrorsByCode)
		}
		if r.CACPUms < 0 || r.HarnessCPUms < 0 {
			t.Errorf("%s: CPU per certificate %v %v", c.peer.name, r.CACPUms, r.HarnessCPUms)
		}
	}

	// An answer that is not a certificate counts as an error, by its code.
	c := Config{Addr: cfssl.URL, CAFile: caFile, Devices: 3, Concurrency: 1, KeyPool: 1,
		peer: &peer{name: "cfssl", signPath: "/api/v1/cfssl/sign", readyPath: "/api/v1/cfssl/health",
			body: func(_, _ string, _ []byte) ([]byte, error) { return []byte(`{"certificate_request":"x"}`), nil }}}
	r, err := Run(context.Background(), c)
	if err != nil || r.Errors != 3 || r.ErrorsByCode["cfssl_5100"] != 3 {
		t.Errorf("bad requests: %v, errors %v", err, r.ErrorsByCode)
	}
}

func TestPeersTable(t *testing.T) {
	r := &PeersResult{Results: []*Result{
		{CA: "quorumca (dev, 1 node)", CertsPerSecond: 2000, CACPUms: 0.5, Concurrency: 64, Seconds: 10},
		{CA: "step-ca v0.30.2 (badger)", CertsPerSecond: 1000, CACPUms: 1, Errors: 2, ErrorsByCode: map[string]int{"http_401": 2}},
	}, Errors: []string{"cfssl: not ready"}}
	var sb strings.Builder
	r.Table(&sb)
	out := sb.String()
	for _, want := range []string{"64 workers", "0.50", "2.00", `{"http_401":2}`, "FAILED cfssl: not ready"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

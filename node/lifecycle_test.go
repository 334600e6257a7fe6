package node

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/internal/testwait"
)

// holder is a certificate with its key, as a device holds it.
type holder struct {
	key   crypto.Signer
	cert  *x509.Certificate
	chain []*x509.Certificate
	s     signed
}

// enrollHolder gets a certificate for names through tn.
func (c *testCluster) enrollHolder(tn *testNode, names ...string) *holder {
	c.t.Helper()
	k := newKey(c.t)
	s := c.sign(tn, c.mintToken(tn, "1h", names...), newCSR(c.t, k, names...))
	return c.holderOf(k, s)
}

func (c *testCluster) holderOf(k crypto.Signer, s signed) *holder {
	h := &holder{key: k, cert: parsePEMCert(c.t, s.Certificate), s: s}
	for _, p := range s.Chain {
		h.chain = append(h.chain, parsePEMCert(c.t, p))
	}
	return h
}

// mtls sends a request to tn authenticated with h's certificate.
func (c *testCluster) mtls(h *holder, tn *testNode, method, path string, body []byte, bearer string) reply {
	c.t.Helper()
	return c.mtlsAs(tls.Certificate{Certificate: [][]byte{h.cert.Raw}, PrivateKey: h.key, Leaf: h.cert}, tn, method, path, body, bearer)
}

// mtlsAs is mtls presenting any certificate (a chain, a device's factory
// certificate).
func (c *testCluster) mtlsAs(cert tls.Certificate, tn *testNode, method, path string, body []byte, bearer string) reply {
	c.t.Helper()
	tr := c.client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, "https://"+tn.node.APIAddr()+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: data}
}

// ocspStatus asks tn's plain-HTTP responder about h's certificate.
func (c *testCluster) ocspStatus(tn *testNode, h *holder) *ocsp.Response {
	c.t.Helper()
	req, err := ocsp.CreateRequest(h.cert, h.chain[0], &ocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.Post("http://"+tn.node.HTTPAddr()+"/v1/ocsp", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	r, err := ocsp.ParseResponseForCert(der, h.cert, h.chain[0])
	if err != nil {
		c.t.Fatalf("OCSP response from %s: %v (status %d)", tn.cfg.NodeName, err, resp.StatusCode)
	}
	return r
}

// crl fetches and checks tn's CRL for the default authority.
func (c *testCluster) crl(tn *testNode, issuer *x509.Certificate) *x509.RevocationList {
	c.t.Helper()
	resp, err := http.Get("http://" + tn.node.HTTPAddr() + "/v1/crl")
	if err != nil {
		c.t.Fatal(err)
	}
	return readCRL(c.t, resp, issuer)
}

// readCRL reads a CRL response and checks the issuer signed it.
func readCRL(t *testing.T, resp *http.Response, issuer *x509.Certificate) *x509.RevocationList {
	t.Helper()
	defer resp.Body.Close()
	der, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CRL: %d %s", resp.StatusCode, der)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	return crl
}

// crlListing waits until tn's CRL lists serial and returns that CRL. The
// leader re-signs a CRL that lacks a revocation within its CRL interval;
// the wait allows that interval and the time to sign and replicate one
// CRL, nothing more.
func (c *testCluster) crlListing(tn *testNode, issuer *x509.Certificate, serial *big.Int) *x509.RevocationList {
	c.t.Helper()
	var crl *x509.RevocationList
	testwait.For(c.t, c.crlInterval+3*time.Second, "the CRL on "+tn.cfg.NodeName+" to list "+serial.Text(16), func() bool {
		crl = c.crl(tn, issuer)
		return listed(crl, serial) != nil
	})
	return crl
}

func listed(crl *x509.RevocationList, serial *big.Int) *x509.RevocationListEntry {
	for i, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return &crl.RevokedCertificateEntries[i]
		}
	}
	return nil
}

// Revoke on node A; right after the call returns, OCSP on node C says
// revoked, the record says so, and renewal on node B is refused; C's CRL
// lists it within the CRL interval.
func TestRevocationIsVisibleEverywhereAtOnce(t *testing.T) {
	c := newTestCluster(t, 3)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	h := c.enrollHolder(b, "victim.example")
	other := c.enrollHolder(b, "bystander.example")

	if st := c.ocspStatus(cc, h); st.Status != ocsp.Good {
		t.Fatalf("before revocation: OCSP status %d", st.Status)
	}
	crlBefore := c.crl(cc, h.chain[0])

	r := c.do(a, "POST", "/v1/revoke", map[string]string{"serial": h.s.Serial, "reason": "keyCompromise"}, c.admin)
	if r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}

	st := c.ocspStatus(cc, h)
	if st.Status != ocsp.Revoked || st.RevocationReason != ocsp.KeyCompromise {
		t.Errorf("OCSP on another node right after revoke: status %d reason %d", st.Status, st.RevocationReason)
	}
	if st := c.ocspStatus(cc, other); st.Status != ocsp.Good {
		t.Errorf("bystander: OCSP status %d", st.Status)
	}
	crl := c.crlListing(cc, h.chain[0], h.cert.SerialNumber)
	if e := listed(crl, h.cert.SerialNumber); e == nil || e.ReasonCode != 1 {
		t.Errorf("CRL on another node does not list the revocation: %+v", e)
	}
	if crl.Number.Cmp(crlBefore.Number) <= 0 {
		t.Errorf("CRL number %v did not increase from %v", crl.Number, crlBefore.Number)
	}
	if listed(crl, other.cert.SerialNumber) != nil {
		t.Error("bystander listed")
	}
	if r := c.mtls(h, b, "POST", "/v1/renew", nil, ""); r.status != http.StatusForbidden || r.errorCode() != "certificate_revoked" {
		t.Errorf("renewal of a revoked certificate on a third node: %d %s", r.status, r.body)
	}
	var rec struct{ Status string }
	c.do(cc, "GET", "/v1/certs/"+h.s.Serial, nil, "").decode(t, &rec)
	if rec.Status != "revoked" {
		t.Errorf("record status %q", rec.Status)
	}
}

// A revocation sent to a follower is on every node's CRL within the CRL
// interval: the leader signs it from its own state, whichever node took
// the revocation.
func TestRevocationThroughFollowerIsOnEveryCRL(t *testing.T) {
	c := newTestCluster(t, 3)
	for i, tn := range c.Followers() {
		for j := range 5 {
			h := c.enrollHolder(tn, fmt.Sprintf("f%d-%d.example", i, j))
			r := c.do(tn, "POST", "/v1/revoke", map[string]string{"serial": h.s.Serial}, c.admin)
			if r.status != http.StatusOK {
				t.Fatalf("revoke through %s: %d %s", tn.cfg.NodeName, r.status, r.body)
			}
			for _, n := range c.running() {
				c.crlListing(n, h.chain[0], h.cert.SerialNumber)
			}
		}
	}
}

func TestHolderMayRevokeOnlyItself(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	h := c.enrollHolder(n, "self.example")
	other := c.enrollHolder(n, "other.example")
	body := func(serial string) []byte { return []byte(`{"serial": "` + serial + `", "reason": "superseded"}`) }
	if r := c.mtls(h, n, "POST", "/v1/revoke", body(other.s.Serial), ""); r.status != http.StatusForbidden {
		t.Errorf("revoking another's certificate: %d %s", r.status, r.body)
	}
	if r := c.mtls(h, n, "POST", "/v1/revoke", body(h.s.Serial), ""); r.status != http.StatusOK {
		t.Errorf("revoking its own: %d %s", r.status, r.body)
	}
}

func TestRenewalOverMTLS(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.Followers()
	h := c.enrollHolder(f[0], "svc-a.example", "10.0.0.1")

	r := c.mtls(h, f[1], "POST", "/v1/renew", nil, "")
	if r.status != http.StatusCreated {
		t.Fatalf("renew: %d %s", r.status, r.body)
	}
	var s signed
	r.decode(t, &s)
	renewed := c.holderOf(h.key, s)
	if !slices.Equal(renewed.cert.DNSNames, h.cert.DNSNames) || !renewed.cert.IPAddresses[0].Equal(h.cert.IPAddresses[0]) ||
		renewed.cert.Subject.String() != h.cert.Subject.String() || renewed.cert.SerialNumber.Cmp(h.cert.SerialNumber) == 0 {
		t.Errorf("renewal changed identity: %v %v", renewed.cert.Subject, renewed.cert.DNSNames)
	}
	if !renewed.cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(h.key.Public()) {
		t.Error("renewal without a CSR changed the key")
	}
	var rec struct {
		RenewedFrom string `json:"renewed_from"`
		Requester   string
	}
	c.do(f[0], "GET", "/v1/certs/"+s.Serial, nil, "").decode(t, &rec)
	if rec.RenewedFrom != h.s.Serial {
		t.Errorf("renewal not linked to %s: %+v", h.s.Serial, rec)
	}

	// Key rotation: a CSR with a new key and the same names.
	k2 := newKey(t)
	csr := csrFor(t, k2, &x509.CertificateRequest{DNSNames: []string{"svc-a.example", "10.0.0.1"}})
	r = c.mtls(renewed, f[0], "POST", "/v1/renew", jsonBody(map[string]string{"csr": string(csr)}), "")
	if r.status != http.StatusCreated {
		t.Fatalf("renew with a new key: %d %s", r.status, r.body)
	}
	r.decode(t, &s)
	rotated := c.holderOf(k2, s)
	if !rotated.cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(k2.Public()) {
		t.Error("key not rotated")
	}
}

// A renewal cannot change names or escalate.
func TestRenewalCannotEscalate(t *testing.T) {
	c := newTestCluster(t, 3)
	n := c.nodes[1]
	h := c.enrollHolder(n, "svc-a.example")

	tests := []struct {
		name  string
		names []string
	}{
		{"other name", []string{"svc-b.example"}},
		{"extra name", []string{"svc-a.example", "svc-b.example"}},
		{"fewer names", []string{"svc-a2.example"}},
	}
	for _, tt := range tests {
		csr := csrFor(t, newKey(t), &x509.CertificateRequest{DNSNames: tt.names})
		r := c.mtls(h, n, "POST", "/v1/renew", jsonBody(map[string]string{"csr": string(csr)}), "")
		if r.status != http.StatusForbidden || r.errorCode() != "san_not_allowed" {
			t.Errorf("%s: %d %s", tt.name, r.status, r.body)
		}
	}

	// A certificate from a CA this cluster does not run, even one with
	// names and a serial the cluster knows.
	foreign := otherCAHolder(t, h.cert)
	if r := c.mtls(foreign, n, "POST", "/v1/renew", nil, ""); r.status != http.StatusNotFound || r.errorCode() != "certificate_unknown" {
		t.Errorf("foreign certificate: %d %s", r.status, r.body)
	}

	// Expired beyond the grace window (none by default).
	c.clock.Advance(25 * time.Hour)
	if r := c.mtls(h, n, "POST", "/v1/renew", nil, ""); r.status != http.StatusForbidden || r.errorCode() != "certificate_expired" {
		t.Errorf("expired certificate: %d %s", r.status, r.body)
	}
}

// otherCAHolder copies a certificate's serial and names into a certificate
// from an unrelated CA.
func otherCAHolder(t *testing.T, like *x509.Certificate) *holder {
	t.Helper()
	pki, err := LoadOrCreateDevPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: like.SerialNumber, Subject: like.Subject, DNSNames: like.DNSNames,
		NotBefore: like.NotBefore, NotAfter: like.NotAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(nil, tmpl, pki.root, k.Public(), pki.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &holder{key: k, cert: cert, chain: []*x509.Certificate{pki.root}}
}

// Behind a proxy that ends TLS, a device renews with a token signed by its
// current key, the certificate in x5c. Each token works once.
func TestRenewalWithBearerToken(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.Followers()
	h := c.enrollHolder(f[0], "proxied.example")
	tokenFor := func(aud string, life time.Duration, jti string) string {
		now := time.Now()
		tok, err := authority.SignJWT(h.key, "", [][]byte{h.cert.Raw}, map[string]any{
			"aud": aud, "jti": jti, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(life).Unix(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	renewURL := func(tn *testNode) string { return "https://" + tn.node.APIAddr() + "/v1/renew" }

	tok := tokenFor(renewURL(f[1]), 2*time.Minute, "renew-1")
	if r := c.do(f[1], "POST", "/v1/renew", nil, tok); r.status != http.StatusCreated {
		t.Fatalf("renew with token: %d %s", r.status, r.body)
	}
	// The same token again, on another node: refused cluster-wide.
	if r := c.do(f[0], "POST", "/v1/renew", nil, tok); r.status != http.StatusUnauthorized && r.status != http.StatusConflict {
		t.Errorf("replayed renewal token: %d %s", r.status, r.body)
	}
	for name, bad := range map[string]string{
		"wrong audience":   tokenFor("https://elsewhere.example/v1/renew", time.Minute, "renew-2"),
		"long-lived":       tokenFor(renewURL(f[0]), time.Hour, "renew-3"),
		"expired":          tokenFor(renewURL(f[0]), -2*time.Minute, "renew-4"),
		"signed elsewhere": mustSwapKey(t, tokenFor(renewURL(f[0]), time.Minute, "renew-5")),
	} {
		if r := c.do(f[0], "POST", "/v1/renew", nil, bad); r.status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
}

// mustSwapKey re-signs a token's claims with another key, keeping x5c.
func mustSwapKey(t *testing.T, tok string) string {
	parts := bytes.Split([]byte(tok), []byte("."))
	other, err := authority.SignJWT(newKey(t), "", nil, map[string]any{"jti": "x"})
	if err != nil {
		t.Fatal(err)
	}
	sig := bytes.Split([]byte(other), []byte("."))[2]
	return string(bytes.Join([][]byte{parts[0], parts[1], sig}, []byte(".")))
}

func TestRevokedTokenCannotBeUsed(t *testing.T) {
	c := newTestCluster(t, 3)
	r := c.do(c.nodes[0], "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"t.example"}}, c.admin)
	var tok struct{ Token, ID string }
	r.decode(t, &tok)
	if r := c.do(c.nodes[1], "DELETE", "/v1/admin/tokens/"+tok.ID, nil, c.admin); r.status != http.StatusNoContent {
		t.Fatalf("revoke token: %d %s", r.status, r.body)
	}
	r = c.do(c.nodes[2], "POST", "/v1/sign", map[string]string{"csr": string(newCSR(t, newKey(t), "t.example")), "token": tok.Token}, "")
	if r.status != http.StatusUnauthorized || r.errorCode() != "token_revoked" {
		t.Fatalf("revoked token: %d %s", r.status, r.body)
	}
}

func jsonBody(v any) []byte {
	var b bytes.Buffer
	if err := jsonEncode(&b, v); err != nil {
		panic(err)
	}
	return b.Bytes()
}

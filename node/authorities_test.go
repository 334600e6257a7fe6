package node

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/http"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/internal/testwait"
	"github.com/quorumca/quorumca/signer/awskms/kmstest"
)

type authorityReply struct {
	Name    string
	Issuers []struct {
		ID, Certificate string
		Active          bool
	}
}

// Rotation: new certificates come from the new intermediate; the retired one
// still answers for what it issued (CRL, OCSP). Rotating with keep_others
// spreads issuance over both.
func TestRotationAndSpread(t *testing.T) {
	kms := kmstest.Start(t)
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) { c.noDefaultAuthority = true })
	c.createAuthority(c.nodes[0], "kms", kms.KeyURI(""), kms.KeyURI(""))
	old := c.enrollHolder(c.nodes[1], "before.example")

	r := c.do(c.nodes[2], "POST", "/v1/admin/authorities/kms/rotate", map[string]any{"key": kms.KeyURI(""), "create_keys": true}, c.admin)
	if r.status != http.StatusOK {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	var a authorityReply
	r.decode(t, &a)
	if len(a.Issuers) != 2 || a.Issuers[0].Active || !a.Issuers[1].Active {
		t.Fatalf("after rotation: %+v", a.Issuers)
	}
	c.WaitConverged()
	fresh := c.enrollHolder(c.nodes[1], "after.example")
	if fresh.chain[0].Equal(old.chain[0]) {
		t.Fatal("issuance did not switch to the new intermediate")
	}
	if err := fresh.chain[0].CheckSignatureFrom(mustRoot(t, c, "kms")); err != nil {
		t.Fatalf("new intermediate not signed by the root: %v", err)
	}

	// The retired issuer revokes, lists in its CRL and answers OCSP.
	if r := c.do(c.nodes[0], "POST", "/v1/revoke", map[string]string{"serial": old.s.Serial}, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	// Within the CRL interval.
	testwait.For(t, c.crlInterval+3*time.Second, "the retired issuer's CRL to list its revoked certificate", func() bool {
		resp, err := http.Get(old.cert.CRLDistributionPoints[0])
		if err != nil {
			t.Fatal(err)
		}
		return listed(readCRL(t, resp, old.chain[0]), old.cert.SerialNumber) != nil
	})
	if st := c.ocspStatus(c.nodes[2], old); st.Status != ocsp.Revoked {
		t.Errorf("OCSP for the old issuer's certificate: %d", st.Status)
	}
	if st := c.ocspStatus(c.nodes[2], fresh); st.Status != ocsp.Good {
		t.Errorf("OCSP for the new issuer's certificate: %d", st.Status)
	}

	// A third key shares issuance instead of replacing.
	r = c.do(c.nodes[1], "POST", "/v1/admin/authorities/kms/rotate", map[string]any{"key": kms.KeyURI(""), "create_keys": true, "keep_others": true}, c.admin)
	if r.status != http.StatusOK {
		t.Fatalf("rotate keep_others: %d %s", r.status, r.body)
	}
	c.WaitConverged()
	seen := map[string]bool{}
	for i := range 8 {
		h := c.enrollHolder(c.nodes[0], "spread"+string(rune('a'+i))+".example")
		seen[authority.IssuerID(h.chain[0])] = true
	}
	if len(seen) != 2 {
		t.Fatalf("issuance used %d issuers, want the 2 active ones", len(seen))
	}
}

func mustRoot(t *testing.T, c *testCluster, name string) *x509.Certificate {
	var roots struct{ Roots []string }
	c.do(c.nodes[0], "GET", "/v1/authorities/"+name+"/roots", nil, "").decode(t, &roots)
	return parsePEMCert(t, roots.Roots[0])
}

// An offline root: the cluster makes a CSR for a KMS key, the root signs it
// elsewhere, and import installs it after checking key and chain.
func TestOfflineRootImport(t *testing.T) {
	kms := kmstest.Start(t)
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) { c.noDefaultAuthority = true })
	n := c.nodes[0]
	r := c.do(n, "POST", "/v1/admin/authorities/csr", map[string]any{"key": kms.KeyURI(""), "create_keys": true, "common_name": "Offline-rooted CA"}, c.admin)
	if r.status != http.StatusOK {
		t.Fatalf("csr: %d %s", r.status, r.body)
	}
	var csr struct{ CSR, Key string }
	r.decode(t, &csr)

	// The offline ceremony, here in memory.
	rootKey := newKey(t)
	root, err := authority.CreateRoot(rootKey, "Offline Root", 24*time.Hour*3650, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(csr.CSR))
	req, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil || req.CheckSignature() != nil {
		t.Fatalf("CSR from the cluster: %v", err)
	}
	inter := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: req.Subject, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(24 * time.Hour * 365), IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, inter, root, req.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	rootPEM := string(authority.EncodePEM(root.Raw))
	chainPEM := string(authority.EncodePEM(der))

	// Refused: a key that is not the intermediate's, a root it does not chain to.
	other := newKey(t)
	otherRoot, _ := authority.CreateRoot(other, "Other", time.Hour, time.Now())
	for name, body := range map[string]map[string]any{
		"wrong key":  {"name": "offline", "root": rootPEM, "chain": chainPEM, "key": kms.KeyURI("")},
		"wrong root": {"name": "offline", "root": string(authority.EncodePEM(otherRoot.Raw)), "chain": chainPEM, "key": csr.Key},
	} {
		if name == "wrong key" {
			r := c.do(n, "POST", "/v1/admin/authorities/csr", map[string]any{"key": kms.KeyURI(""), "create_keys": true}, c.admin)
			var k struct{ Key string }
			r.decode(t, &k)
			body["key"] = k.Key
		}
		if r := c.do(n, "POST", "/v1/admin/authorities/import", body, c.admin); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}

	r = c.do(n, "POST", "/v1/admin/authorities/import", map[string]any{"name": "offline", "root": rootPEM, "chain": chainPEM, "key": csr.Key}, c.admin)
	if r.status != http.StatusCreated {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	c.WaitConverged()
	// The cluster's first authority gets a default provisioner: issue.
	h := c.enrollHolder(n, "offline.example")
	if err := h.chain[0].CheckSignatureFrom(root); err != nil || h.chain[0].Subject.CommonName != "Offline-rooted CA" {
		t.Fatalf("issued under %s: %v", h.chain[0].Subject, err)
	}
	// Rotation needs the root key, which the cluster does not have.
	if r := c.do(n, "POST", "/v1/admin/authorities/offline/rotate", map[string]any{"key": kms.KeyURI(""), "create_keys": true}, c.admin); r.status != http.StatusBadRequest {
		t.Errorf("rotate with an offline root: %d %s", r.status, r.body)
	}

	// The offline root's CRL: none until one is imported; the cluster says
	// what to sign (the revoked intermediate), the root signs it offline,
	// the cluster takes it only if a root of the authority signed it and
	// it lists what it must.
	id := authority.IssuerID(root)
	if r := c.do(n, "GET", "/v1/authorities/offline/roots/"+id+"/crl", nil, ""); r.status != http.StatusNotFound {
		t.Errorf("an offline root's CRL before any import: %d", r.status)
	}
	if r := c.do(n, "POST", "/v1/admin/authorities/offline/issuers/"+authority.IssuerID(h.chain[0])+"/revoke", map[string]any{"reason": "superseded", "force": true}, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke issuer: %d %s", r.status, r.body)
	}
	r = c.do(n, "GET", "/v1/admin/authorities/offline/root-crl-request", nil, c.admin)
	var creq authority.RootCRLRequest
	r.decode(t, &creq)
	if creq.Number != 1 || len(creq.Revoked) != 1 || creq.Revoked[0].Serial != authority.SerialHex(h.chain[0].SerialNumber) {
		t.Fatalf("root CRL request: %s", r.body)
	}
	importCRL := func(req authority.RootCRLRequest, key crypto.Signer) reply {
		der, err := authority.SignRootCRL(&req, key, 720*time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c.do(n, "POST", "/v1/admin/authorities/offline/root-crl", map[string]string{"crl": string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))}, c.admin)
	}
	forged := creq
	forged.RootPEM = string(authority.EncodePEM(otherRoot.Raw))
	omits := creq
	omits.Revoked = nil
	for what, r := range map[string]reply{
		"signed by another root":      importCRL(forged, other),
		"without the revoked":         importCRL(omits, rootKey),
		"not a CRL":                   c.do(n, "POST", "/v1/admin/authorities/offline/root-crl", map[string]string{"crl": rootPEM}, c.admin),
		"without an admin credential": c.do(n, "POST", "/v1/admin/authorities/offline/root-crl", map[string]string{"crl": ""}, ""),
	} {
		if r.status/100 != 4 || r.errorCode() == "" {
			t.Errorf("import of a root CRL %s: %d %s", what, r.status, r.body)
		}
	}
	if r := importCRL(creq, rootKey); r.status != http.StatusOK {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	if r := importCRL(creq, rootKey); r.status != http.StatusConflict {
		t.Errorf("the same CRL number again: %d %s", r.status, r.body)
	}
	r = c.do(c.nodes[0], "GET", "/v1/authorities/offline/roots/"+id+"/crl", nil, "")
	l, err := x509.ParseRevocationList(r.body)
	if r.status != http.StatusOK || err != nil || l.CheckSignatureFrom(root) != nil || listed(l, h.chain[0].SerialNumber) == nil {
		t.Fatalf("the imported root CRL: %d %v", r.status, err)
	}
}

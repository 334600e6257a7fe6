package node

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
)

// A jwk provisioner's key holder mints its own one-time JWTs; each works
// once, cluster-wide.
func TestJWKProvisionerTokens(t *testing.T) {
	key := newKey(t)
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) {
		jwk, err := json.Marshal(jose.JSONWebKey{Key: key.Public(), KeyID: "automation-1", Use: "sig"})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(c.dir, "automation.jwk.json")
		os.WriteFile(path, jwk, 0o600)
		pol := authority.DefaultPolicy()
		pol.DNS = []string{"*.svc.example"}
		c.provisioners = []*ProvisionerConfig{
			{Provisioner: fsm.Provisioner{Name: "default", Kind: fsm.KindEnrollmentToken, Authority: "default", Policy: authority.DefaultPolicy()}},
			{Provisioner: fsm.Provisioner{Name: "automation", Kind: fsm.KindJWK, Authority: "default", Policy: pol}, JWKFile: path},
		}
	})
	a, b := c.nodes[0], c.nodes[2]
	mint := func(aud string, life time.Duration, jti string, sans ...string) string {
		now := time.Now()
		tok, err := authority.SignJWT(key, "automation-1", nil, map[string]any{
			"iss": "automation", "sub": sans[0], "sans": sans, "aud": aud, "jti": jti,
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(life).Unix(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	signURL := func(tn *testNode) string { return "https://" + tn.node.APIAddr() + "/v1/sign" }
	csr := newCSR(t, newKey(t), "api.svc.example")
	post := func(tn *testNode, tok string) reply {
		return c.do(tn, "POST", "/v1/sign", map[string]string{"csr": string(csr), "token": tok}, "")
	}

	tok := mint(signURL(a), 2*time.Minute, "job-1", "api.svc.example")
	r := post(a, tok)
	if r.status != http.StatusCreated {
		t.Fatalf("sign with jwk token: %d %s", r.status, r.body)
	}
	var s signed
	r.decode(t, &s)
	var rec struct{ Provisioner, Requester string }
	c.do(b, "GET", "/v1/certs/"+s.Serial, nil, "").decode(t, &rec)
	if rec.Provisioner != "automation" || rec.Requester != "jwk:automation:api.svc.example" {
		t.Errorf("record %+v", rec)
	}
	// Replayed to a second node (its audience rewritten cannot help: the
	// signature covers it; the very same token is refused as used).
	if r := post(b, mint(signURL(b), 2*time.Minute, "job-1", "api.svc.example")); r.status != http.StatusConflict || r.errorCode() != "token_used" {
		t.Errorf("jti replayed to another node: %d %s", r.status, r.body)
	}
	if r := post(a, tok); r.status != http.StatusConflict || r.errorCode() != "token_used" {
		t.Errorf("token replayed: %d %s", r.status, r.body)
	}

	bad := map[string]struct {
		tok    string
		status int
		code   string
	}{
		"wrong audience":      {mint("https://other-ca.example/v1/sign", time.Minute, "j2", "api.svc.example"), 401, "token_invalid"},
		"lives too long":      {mint(signURL(a), time.Hour, "j3", "api.svc.example"), 401, "token_invalid"},
		"expired":             {mint(signURL(a), -5*time.Minute, "j4", "api.svc.example"), 401, "token_expired"},
		"names of token":      {mint(signURL(a), time.Minute, "j5", "other.svc.example"), 403, "san_not_allowed"},
		"outside policy":      {mint(signURL(a), time.Minute, "j6", "api.svc.example", "db.prod.example"), 403, "san_not_allowed"},
		"signed by other key": {mustSwapKey(t, mint(signURL(a), time.Minute, "j7", "api.svc.example")), 401, "token_invalid"},
	}
	for name, tt := range bad {
		req := csr
		if name == "outside policy" {
			req = newCSR(t, newKey(t), "api.svc.example", "db.prod.example")
		}
		r := c.do(a, "POST", "/v1/sign", map[string]string{"csr": string(req), "token": tt.tok}, "")
		if r.status != tt.status || r.errorCode() != tt.code {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
}

// Several authorities in one cluster: a provisioner issues from its own.
func TestMultipleAuthorities(t *testing.T) {
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) {
		db, err := LoadOrCreateDevPKI(filepath.Join(c.dir, "pki-db"))
		if err != nil {
			t.Fatal(err)
		}
		a := db.Authority("")
		a.Name = "db"
		c.authorities = []*AuthorityConfig{a}
		c.provisioners = []*ProvisionerConfig{
			{Provisioner: fsm.Provisioner{Name: "default", Kind: fsm.KindEnrollmentToken, Authority: "default", Policy: authority.DefaultPolicy()}},
			{Provisioner: fsm.Provisioner{Name: "db-clients", Kind: fsm.KindEnrollmentToken, Authority: "db", Policy: authority.DefaultPolicy()}},
		}
	})
	n := c.nodes[1]
	var all, dbRoots struct{ Roots []string }
	c.do(n, "GET", "/v1/roots", nil, "").decode(t, &all)
	c.do(n, "GET", "/v1/authorities/db/roots", nil, "").decode(t, &dbRoots)
	if len(all.Roots) != 2 || len(dbRoots.Roots) != 1 {
		t.Fatalf("roots: %d in all, %d for db", len(all.Roots), len(dbRoots.Roots))
	}
	r := c.do(n, "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"client.db.example"}, "provisioner": "db-clients"}, c.admin)
	var tok struct{ Token string }
	r.decode(t, &tok)
	s := c.sign(n, tok.Token, newCSR(t, newKey(t), "client.db.example"))
	leaf := parsePEMCert(t, s.Certificate)
	verify := func(rootPEM string) error {
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(parsePEMCert(t, rootPEM))
		inter.AddCert(parsePEMCert(t, s.Chain[0]))
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	if err := verify(dbRoots.Roots[0]); err != nil {
		t.Errorf("db certificate does not chain to the db root: %v", err)
	}
	var defRoots struct{ Roots []string }
	c.do(n, "GET", "/v1/authorities/default/roots", nil, "").decode(t, &defRoots)
	if verify(defRoots.Roots[0]) == nil {
		t.Error("db certificate chains to the default root")
	}
	// Each authority has its own CRL.
	if r := c.do(n, "GET", "/v1/authorities/db/crl", nil, ""); r.status != http.StatusOK {
		t.Errorf("db CRL: %d", r.status)
	}
}

// allow_wildcard through the admin API: off, a token for a wildcard name is
// refused although dns covers it; turned on (a version-2 provisioner put,
// replicated to every node), the wildcard certificate is issued.
func TestWildcardProvisionerThroughAdminAPI(t *testing.T) {
	c := newTestCluster(t, 3)
	a, b := c.nodes[0], c.nodes[2]
	doc := map[string]any{"name": "wild", "kind": "enrollment-token", "authority": "default",
		"policy": map[string]any{"dns": []string{"*.w.example"}}}
	if r := c.do(a, "POST", "/v1/admin/provisioners", doc, c.admin); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	mint := func(tn *testNode) reply {
		return c.do(tn, "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"*.w.example"}, "provisioner": "wild"}, c.admin)
	}
	if r := mint(b); r.status != http.StatusForbidden || r.errorCode() != "san_not_allowed" {
		t.Fatalf("wildcard token without allow_wildcard: %d %s", r.status, r.body)
	}
	doc["policy"].(map[string]any)["allow_wildcard"] = true
	doc["version"] = 1
	if r := c.do(b, "PUT", "/v1/admin/provisioners/wild", doc, c.admin); r.status != http.StatusOK {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	var got struct {
		Policy struct {
			AllowWildcard bool `json:"allow_wildcard"`
		}
	}
	c.do(a, "GET", "/v1/admin/provisioners/wild", nil, c.admin).decode(t, &got)
	if !got.Policy.AllowWildcard {
		t.Fatal("allow_wildcard not kept")
	}
	r := mint(a)
	if r.status != http.StatusCreated {
		t.Fatalf("wildcard token with allow_wildcard: %d %s", r.status, r.body)
	}
	var tok struct{ Token string }
	r.decode(t, &tok)
	s := c.sign(b, tok.Token, newCSR(t, newKey(t), "*.w.example"))
	if leaf := parsePEMCert(t, s.Certificate); len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "*.w.example" {
		t.Errorf("names %v", leaf.DNSNames)
	}
	c.WaitConverged()
}

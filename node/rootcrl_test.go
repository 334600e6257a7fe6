package node

import (
	"bytes"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/internal/testwait"
	"github.com/quorumca/quorumca/signer/awskms/kmstest"
)

// An authority whose root key is in a KMS: its intermediates name the
// root's CRL and certificate (CDP, AIA), every node serves both, the root
// signs a CRL on the leader's schedule, and an intermediate revoked
// through a follower is on it within the CRL interval. (Before, no root
// CRL existed and intermediates named none.)
func TestRootCRLListsARevokedIntermediate(t *testing.T) {
	kms := kmstest.Start(t)
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) { c.noDefaultAuthority = true })
	c.createAuthority(c.nodes[0], "kms", kms.KeyURI(""), kms.KeyURI(""))
	root := mustRoot(t, c, "kms")
	old := c.enrollHolder(c.nodes[1], "before.example")
	inter := old.chain[0]
	id := authority.IssuerID(root)
	base := "http://" + c.nodes[0].cfg.HTTPListen + "/v1/authorities/kms/roots/" + id
	if len(inter.CRLDistributionPoints) != 1 || inter.CRLDistributionPoints[0] != base+"/crl" ||
		len(inter.IssuingCertificateURL) != 1 || inter.IssuingCertificateURL[0] != base+"/root.crt" {
		t.Fatalf("intermediate CDP %v, AIA %v; want %s/crl and %s/root.crt", inter.CRLDistributionPoints, inter.IssuingCertificateURL, base, base)
	}
	rootCRL := func() *x509.RevocationList {
		t.Helper()
		resp, err := http.Get(inter.CRLDistributionPoints[0])
		if err != nil {
			t.Fatal(err)
		}
		return readCRL(t, resp, root)
	}
	testwait.For(t, c.crlInterval+5*time.Second, "the root's first CRL", func() bool {
		resp, err := http.Get(inter.CRLDistributionPoints[0])
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	resp, err := http.Get(inter.IssuingCertificateURL[0])
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(der, root.Raw) {
		t.Fatalf("AIA of the intermediate served %d bytes, not the root", len(der))
	}
	c.WaitConverged()
	first := rootCRL()
	for _, n := range c.nodes { // every node, API and plain HTTP
		r := c.do(n, "GET", "/v1/authorities/kms/roots/"+id+"/crl", nil, "")
		if r.status != http.StatusOK || !bytes.Equal(r.body, first.Raw) {
			t.Fatalf("root CRL on %s: %d, same as node 0's: %v", n.cfg.NodeName, r.status, bytes.Equal(r.body, first.Raw))
		}
		if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") || r.header.Get("ETag") == "" {
			t.Errorf("root CRL cache headers: %q, ETag %q", cc, r.header.Get("ETag"))
		}
		resp, err := http.Get("http://" + n.cfg.HTTPListen + "/v1/authorities/kms/roots/" + id + "/crl")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("root CRL over plain HTTP on %s: %v", n.cfg.NodeName, err)
		}
		resp.Body.Close()
	}

	// Revoke the intermediate through a follower, after a rotation gave
	// the authority another.
	if r := c.do(c.nodes[2], "POST", "/v1/admin/authorities/kms/rotate", map[string]any{"key": kms.KeyURI(""), "create_keys": true}, c.admin); r.status != http.StatusOK {
		t.Fatalf("rotate: %d %s", r.status, r.body)
	}
	oldID := authority.IssuerID(inter)
	f := c.Followers()[0]
	for _, bad := range []struct {
		path, body, bearer string
		status             int
	}{
		{"/v1/admin/authorities/kms/issuers/" + oldID + "/revoke", `{"reason":"keyCompromise"}`, "", http.StatusUnauthorized},
		{"/v1/admin/authorities/kms/issuers/0000000000000000/revoke", `{}`, c.admin, http.StatusNotFound},
		{"/v1/admin/authorities/nope/issuers/" + oldID + "/revoke", `{}`, c.admin, http.StatusNotFound},
		{"/v1/admin/authorities/kms/issuers/" + oldID + "/revoke", `{"reason":"certificateHold"}`, c.admin, http.StatusBadRequest},
		{"/v1/admin/authorities/kms/issuers/" + oldID + "/revoke", `{"reason":`, c.admin, http.StatusBadRequest},
	} {
		if r := c.do(f, "POST", bad.path, []byte(bad.body), bad.bearer); r.status != bad.status || r.errorCode() == "" {
			t.Errorf("POST %s %s: %d %s, want %d", bad.path, bad.body, r.status, r.body, bad.status)
		}
	}
	if l := rootCRL(); len(l.RevokedCertificateEntries) != 0 {
		t.Fatalf("refused revocations changed the root CRL: %v", l.RevokedCertificateEntries)
	}
	r := c.do(f, "POST", "/v1/admin/authorities/kms/issuers/"+oldID+"/revoke", map[string]string{"reason": "keyCompromise"}, c.admin)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"revoked_at"`) {
		t.Fatalf("revoke issuer: %d %s", r.status, r.body)
	}
	testwait.For(t, c.crlInterval+5*time.Second, "the root's CRL to list the intermediate", func() bool {
		e := listed(rootCRL(), inter.SerialNumber)
		return e != nil && e.ReasonCode == 1
	})
	if l := rootCRL(); l.Number.Cmp(first.Number) <= 0 {
		t.Errorf("root CRL number %v after %v", l.Number, first.Number)
	}
	c.WaitConverged()
	if fresh := c.enrollHolder(c.nodes[1], "after.example"); fresh.chain[0].Equal(inter) {
		t.Fatal("the revoked intermediate still issues")
	}
}

// Authority settings: the root key must be the root's, CRL validity and
// refresh stay in bounds, and a CRL signed after a change is dated by it.
func TestAuthoritySettingsAreCheckedAndDateCRLs(t *testing.T) {
	kms := kmstest.Start(t)
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) { c.noDefaultAuthority = true })
	n := c.nodes[0]
	c.createAuthority(n, "kms", kms.KeyURI(""), kms.KeyURI(""))
	before := c.do(n, "GET", "/v1/admin/authorities/kms", nil, c.admin)
	var a struct {
		Issuers []struct {
			KeyURI string `json:"key_uri"`
		}
	}
	before.decode(t, &a)
	other := a.Issuers[0].KeyURI // a key, but the intermediate's
	for _, bad := range []string{
		`{"root_key": "` + other + `"}`, // not the root's key
		`{"root_key": "nope:x"}`,
		`{"base_url": "ftp://x"}`,
		`{"crl": {"validity": "1m"}}`,
		`{"crl": {"validity": "10000h"}}`,
		`{"crl": {"validity": "2h", "refresh": "90m"}}`,
		`{"crl": {"refresh": "-1h"}}`,
		`{"crl": 5}`,
	} {
		if r := c.do(n, "PATCH", "/v1/admin/authorities/kms", []byte(bad), c.admin); r.status != http.StatusBadRequest || r.errorCode() == "" {
			t.Errorf("PATCH %s: %d %s, want 400", bad, r.status, r.body)
		}
	}
	if r := c.do(n, "PATCH", "/v1/admin/authorities/kms", []byte(`{}`), ""); r.status != http.StatusUnauthorized {
		t.Errorf("PATCH without a credential: %d", r.status)
	}
	if after := c.do(n, "GET", "/v1/admin/authorities/kms", nil, c.admin); !bytes.Equal(after.body, before.body) {
		t.Fatalf("refused changes changed the authority:\n%s\n%s", before.body, after.body)
	}
	r := c.do(n, "PATCH", "/v1/admin/authorities/kms", []byte(`{"crl": {"validity": "2h", "refresh": "30m"}}`), c.admin)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"validity": "2h0m0s"`) {
		t.Fatalf("PATCH crl: %d %s", r.status, r.body)
	}
	h := c.enrollHolder(n, "x.example")
	if r := c.do(n, "POST", "/v1/revoke", map[string]string{"serial": h.s.Serial}, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	testwait.For(t, c.crlInterval+5*time.Second, "a CRL dated by the new settings", func() bool {
		resp, err := http.Get(h.cert.CRLDistributionPoints[0])
		if err != nil {
			t.Fatal(err)
		}
		l := readCRL(t, resp, h.chain[0])
		return listed(l, h.cert.SerialNumber) != nil && l.NextUpdate.Sub(l.ThisUpdate) == 2*time.Hour
	})
}

// An issuer's chain is replaced only by one for the same key that ends
// under a root of the authority; the same chain again changes nothing.
func TestAnIssuerChainIsReplacedOnlyForTheSameKey(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	ca := n.node.ca
	a, err := ca.Authority("default")
	if err != nil {
		t.Fatal(err)
	}
	inter := mustParseCert(t, a.Issuers[0].Chain[0])
	now := time.Now()
	relinked, err := authority.CreateLinkedIntermediate(c.pki.root, c.pki.rootKey, inter.PublicKey, inter.Subject.CommonName, time.Hour, now, "http://ca.example", "default")
	if err != nil {
		t.Fatal(err)
	}
	otherKey := newKey(t)
	otherRoot, _ := authority.CreateRoot(otherKey, "other", time.Hour, now)
	foreign, _ := authority.CreateIntermediate(otherRoot, otherKey, inter.PublicKey, inter.Subject.CommonName, time.Hour, now)
	stranger, _ := authority.CreateIntermediate(c.pki.root, c.pki.rootKey, newKey(t).Public(), "stranger", time.Hour, now)
	ctx := t.Context()
	for what, chain := range map[string][][]byte{
		"under another root": {foreign.Raw},
		"for another key":    {stranger.Raw},
		"not a certificate":  {[]byte("junk")},
	} {
		if _, err := ca.UpdateAuthority(ctx, authority.UpdateRequest{Name: "default", Chain: chain}); !errors.Is(err, authority.ErrInvalidRequest) {
			t.Errorf("a chain %s: %v, want refused", what, err)
		}
	}
	got, err := ca.UpdateAuthority(ctx, authority.UpdateRequest{Name: "default", Chain: [][]byte{relinked.Raw}})
	if err != nil || !bytes.Equal(got.Issuers[0].Chain[0], relinked.Raw) {
		t.Fatalf("the same key signed again: %v", err)
	}
	index := n.node.FSM().AppliedIndex()
	if _, err := ca.UpdateAuthority(ctx, authority.UpdateRequest{Name: "default", Chain: [][]byte{relinked.Raw}}); err != nil || n.node.FSM().AppliedIndex() != index {
		t.Errorf("the same chain again: %v, applied %d -> %d", err, index, n.node.FSM().AppliedIndex())
	}
}

func mustParseCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

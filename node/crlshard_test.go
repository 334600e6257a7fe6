package node

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// An authority configured with crl { shards = 4 }: its issuer's CRL is
// partitioned from its first start, each certificate names its shard's
// URL (serial modulo 4) under the base URL, each shard carries a critical
// issuing distribution point naming that URL, and a revocation through a
// follower reaches its shard and the complete CRL while the other shards
// are not signed again.
func TestPartitionedCRLs(t *testing.T) {
	const shards = 4
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) {
		c.configure = func(cfg *Config) {
			for _, a := range cfg.Authorities {
				a.CRL.Shards = shards
			}
		}
	})
	a, err := c.nodes[0].node.fsm.Authority("default")
	if err != nil {
		t.Fatal(err)
	}
	iss := a.Issuers[0]
	if iss.CRLShards != shards {
		t.Fatalf("issuer has %d CRL shards, want %d", iss.CRLShards, shards)
	}
	issuer, err := x509.ParseCertificate(iss.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	path := func(k int) string {
		p := "/v1/authorities/default/issuers/" + iss.ID + "/crl"
		if k >= 0 {
			p += "/" + strconv.Itoa(k)
		}
		return p
	}
	fetch := func(tn *testNode, k int) (*x509.RevocationList, int) {
		t.Helper()
		resp, err := http.Get("http://" + tn.node.HTTPAddr() + path(k))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, resp.StatusCode
		}
		return readCRL(t, resp, issuer), http.StatusOK
	}
	testwait.For(t, c.crlInterval+5*time.Second, "every shard's first CRL on every node", func() bool {
		for _, n := range c.nodes {
			for k := -1; k < shards; k++ {
				if _, status := fetch(n, k); status != http.StatusOK {
					return false
				}
			}
		}
		return true
	})
	for k := range shards {
		crl, _ := fetch(c.nodes[2], k)
		want := iss.CRLBaseURL + path(k)
		if got, critical := idpURL(t, crl); got != want || !critical {
			t.Fatalf("shard %d's issuing distribution point %q (critical %v), want %s", k, got, critical, want)
		}
	}
	if complete, _ := fetch(c.nodes[2], -1); hasIDP(complete) {
		t.Fatal("the complete CRL carries an issuing distribution point")
	}

	// Certificates name their shard; enroll until two shards have one.
	byShard := map[int]*holder{}
	for i := 0; len(byShard) < 2; i++ {
		if i == 40 {
			t.Fatalf("40 certificates fell into %d shard", len(byShard))
		}
		h := c.enrollHolder(c.nodes[i%3], fmt.Sprintf("d%d.example", i))
		k := fsm.CRLShard(h.s.Serial, shards)
		if want := iss.CRLBaseURL + path(k); len(h.cert.CRLDistributionPoints) != 1 || h.cert.CRLDistributionPoints[0] != want {
			t.Fatalf("certificate %s names %v, want its shard %s", h.s.Serial, h.cert.CRLDistributionPoints, want)
		}
		byShard[k] = h
	}
	var revoked *holder
	var kr int
	for k, h := range byShard {
		revoked, kr = h, k
		break
	}
	numbers := map[int]string{}
	for k := -1; k < shards; k++ {
		crl, _ := fetch(c.nodes[0], k)
		numbers[k] = crl.Number.String()
	}
	if r := c.do(c.nodes[2], "POST", "/v1/revoke", map[string]string{"serial": revoked.s.Serial, "reason": "keyCompromise"}, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	for _, n := range c.nodes {
		testwait.For(t, c.crlInterval+3*time.Second, fmt.Sprintf("shard %d and the complete CRL on %s to list the revoked certificate", kr, n.cfg.NodeName), func() bool {
			shard, _ := fetch(n, kr)
			complete, _ := fetch(n, -1)
			return listed(shard, revoked.cert.SerialNumber) != nil && listed(complete, revoked.cert.SerialNumber) != nil
		})
	}
	c.WaitConverged()
	for k := range shards {
		crl, _ := fetch(c.nodes[1], k)
		if k != kr && (crl.Number.String() != numbers[k] || listed(crl, revoked.cert.SerialNumber) != nil) {
			t.Errorf("shard %d signed again (number %s, was %s) or lists the revocation", k, crl.Number, numbers[k])
		}
	}

	// The bundle relying parties load holds the root's CRL, the complete
	// one and every shard.
	r := c.do(c.nodes[1], "GET", "/v1/authorities/default/crls.pem", nil, "")
	if r.status != http.StatusOK || strings.Count(string(r.body), "BEGIN X509 CRL") != 2+shards {
		t.Fatalf("bundle: %d, %d CRLs, want %d", r.status, strings.Count(string(r.body), "BEGIN X509 CRL"), 2+shards)
	}
	for _, bad := range []string{strconv.Itoa(shards), "01", "-1", "x", "99999999999999999999"} {
		r := c.do(c.nodes[0], "GET", "/v1/authorities/default/issuers/"+iss.ID+"/crl/"+bad, nil, "")
		if r.status != http.StatusNotFound || !strings.Contains(string(r.body), `"code"`) {
			t.Errorf("shard %q: %d %s, want a 404 JSON error", bad, r.status, r.body)
		}
	}
}

// idpURL reads a CRL's issuing distribution point: its one full-name URI.
func idpURL(t *testing.T, crl *x509.RevocationList) (string, bool) {
	t.Helper()
	for _, e := range crl.Extensions {
		if !e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 28}) {
			continue
		}
		var idp struct {
			DP        asn1.RawValue `asn1:"optional,tag:0"`
			UserCerts bool          `asn1:"optional,tag:1"`
		}
		if _, err := asn1.Unmarshal(e.Value, &idp); err != nil || !idp.UserCerts {
			t.Fatalf("issuing distribution point %x: %v, only user certs %v", e.Value, err, idp.UserCerts)
		}
		var fullName, uri asn1.RawValue
		if _, err := asn1.Unmarshal(idp.DP.Bytes, &fullName); err != nil || fullName.Tag != 0 {
			t.Fatalf("distribution point name: %v", err)
		}
		if _, err := asn1.Unmarshal(fullName.Bytes, &uri); err != nil || uri.Tag != 6 {
			t.Fatalf("general name: %v tag %d", err, uri.Tag)
		}
		return string(uri.Bytes), e.Critical
	}
	return "", false
}

func hasIDP(crl *x509.RevocationList) bool {
	for _, e := range crl.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 28}) {
			return true
		}
	}
	return false
}

// The bundle of an authority with the most shards carries response headers
// a proxy in front of the nodes passes on (nginx's proxy_buffer_size is 4
// or 8 KiB by default, HAProxy's buffer 16 KiB): its ETag is a digest, not
// the list of every CRL's number. It still changes with any CRL and
// revalidates with 304.
func TestCRLBundleHeadersStaySmallWithManyShards(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.configure = func(cfg *Config) {
			for _, a := range cfg.Authorities {
				a.CRL.Shards = authority.MaxCRLShards
			}
		}
	})
	n := c.nodes[0]
	// Over plain HTTP, as relying parties fetch it behind a balancer.
	fetch := func(inm string) (int, http.Header, []byte) {
		return getIfNoneMatch(t, "http://"+n.node.HTTPAddr()+"/v1/authorities/default/crls.pem", inm)
	}
	var header http.Header
	var body []byte
	testwait.For(t, 60*time.Second, "a bundle with every shard", func() bool {
		var status int
		status, header, body = fetch("")
		return status == http.StatusOK
	})
	if got := strings.Count(string(body), "BEGIN X509 CRL"); got != 2+authority.MaxCRLShards {
		t.Fatalf("bundle of %d CRLs, want %d", got, 2+authority.MaxCRLShards)
	}
	size := 0
	for k, vs := range header {
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	etag := header.Get("ETag")
	if size > 4096 {
		t.Fatalf("bundle response headers of %d bytes (ETag %d bytes), more than a proxy's 4 KiB buffer holds", size, len(etag))
	}
	if status, _, _ := fetch(etag); status != http.StatusNotModified {
		t.Fatalf("revalidation with the bundle's ETag: %d", status)
	}
	h := c.enrollHolder(n, "etag.example")
	if r := c.do(n, "POST", "/v1/revoke", map[string]string{"serial": h.s.Serial}, c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	testwait.For(t, c.crlInterval+5*time.Second, "a new bundle for the old ETag", func() bool {
		status, _, _ := fetch(etag)
		return status == http.StatusOK
	})
}

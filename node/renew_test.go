package node

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// mtlsClient presents h's certificate to every node it talks to.
func (c *testCluster) mtlsClient(h *holder) *http.Client {
	tr := c.client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{h.cert.Raw}, PrivateKey: h.key, Leaf: h.cert}}
	tr.MaxIdleConnsPerHost = 64
	c.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// post sends body to tn with client, from any goroutine.
func post(client *http.Client, tn *testNode, path string, body []byte) (reply, error) {
	resp, err := client.Post("https://"+tn.node.APIAddr()+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: data}, err
}

// successors lists the certificates on tn that renew serial.
func successors(t *testing.T, tn *testNode, san, serial string) []*fsm.Cert {
	t.Helper()
	certs, _, err := tn.node.FSM().SearchCerts(fsm.CertQuery{SAN: san, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []*fsm.Cert
	for _, c := range certs {
		if c.RenewedFrom == serial {
			out = append(out, c)
		}
	}
	return out
}

// The review's finding: one certificate renewed 300 times at once gave 301
// valid certificates. Now the FSM decides, cluster-wide, that it renews
// once: every renewal that is answered gets the same successor, byte for
// byte, and the state holds exactly one.
func TestThreeHundredRenewalsYieldOneSuccessor(t *testing.T) {
	// Limits high enough that every renewal reaches the FSM: the rule
	// holds without them (TestRenewalsAreLimitedPerLineage covers them).
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) {
		c.lineageLimits = authority.LineageLimits{RenewalsPerMinute: 60000, RenewalBurst: 1000}
	})
	h := c.enrollHolder(c.nodes[0], "once.example")
	client := c.mtlsClient(h)

	const n = 300
	replies := make([]reply, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 30)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			replies[i], errs[i] = post(client, c.nodes[i%3], "/v1/renew", nil)
		}()
	}
	wg.Wait()
	var first []byte
	answered := 0
	for i, r := range replies {
		switch {
		case errs[i] != nil:
			t.Fatalf("renewal %d: %v", i, errs[i])
		case r.status == http.StatusCreated:
			answered++
			if first == nil {
				first = r.body
			} else if !bytes.Equal(r.body, first) {
				t.Fatalf("renewal %d answered differently:\n%s\nfirst:\n%s", i, r.body, first)
			}
		default:
			t.Fatalf("renewal %d: %d %s", i, r.status, r.body)
		}
	}
	if answered != n {
		t.Fatalf("%d of %d renewals answered", answered, n)
	}
	c.WaitConverged()
	for _, tn := range c.running() {
		if s := successors(t, tn, "once.example", h.s.Serial); len(s) != 1 {
			t.Fatalf("%s holds %d successors of %s, want 1", tn.cfg.NodeName, len(s), h.s.Serial)
		}
	}
}

// The review's finding: 250 holder self-revocations signed 250 CRLs. Now a
// revocation marks its CRL stale and the leader signs each stale CRL at
// most once per interval: the CRL numbers spent are bounded by the time
// taken, and every revocation is on every node's CRL within the interval.
func TestHolderRevocationsBatchCRLSignatures(t *testing.T) {
	const interval = time.Second
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) { c.crlInterval = interval })
	const n = 250
	r := c.do(c.nodes[0], "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"rev{n}.example"}, "ttl": "1h", "count": n}, c.admin)
	if r.status != http.StatusCreated {
		t.Fatalf("mint: %d %s", r.status, r.body)
	}
	var batch struct{ Tokens []struct{ Token string } }
	r.decode(t, &batch)
	holders := make([]*holder, n)
	for i, tok := range batch.Tokens {
		k := newKey(t)
		name := fmt.Sprintf("rev%d.example", i+1)
		holders[i] = c.holderOf(k, c.sign(c.nodes[i%3], tok.Token, newCSR(t, k, name)))
	}
	issuer := holders[0].chain[0]
	before := c.crl(c.nodes[0], issuer).Number

	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, n)
	for i, h := range holders {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := post(c.mtlsClient(h), c.nodes[i%3], "/v1/revoke", []byte(`{"serial":"`+h.s.Serial+`","reason":"superseded"}`))
			if err == nil && r.status != http.StatusOK {
				err = fmt.Errorf("revoke %s: %d %s", h.s.Serial, r.status, r.body)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	revoked := time.Now()

	// Within the interval (and the time to sign and replicate one CRL),
	// every node's CRL lists all of them.
	var last *big.Int
	testwait.For(t, interval+5*time.Second, "every CRL to list every revocation", func() bool {
		for _, tn := range c.running() {
			crl := c.crl(tn, issuer)
			for _, h := range holders {
				if listed(crl, h.cert.SerialNumber) == nil {
					return false
				}
			}
			last = crl.Number
		}
		return true
	})
	signed := new(big.Int).Sub(last, before).Int64()
	bound := int64(time.Since(start)/interval) + 2
	t.Logf("%d holder revocations in %v; %d CRLs signed (bound %d)", n, revoked.Sub(start).Round(time.Millisecond), signed, bound)
	if signed < 1 || signed > bound {
		t.Fatalf("%d revocations signed %d CRLs, want between 1 and %d (one per %v)", n, signed, bound, interval)
	}
}

// A device that rotates its key and loses the answer asks again with the
// same new key and gets the same answer, byte for byte; asked with the old
// key or another one, the renewed certificate is refused with a clear 409.
func TestRenewalRetriedAfterKeyRotation(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.Followers()
	h := c.enrollHolder(f[0], "rotor.example")
	names := &x509.CertificateRequest{DNSNames: []string{"rotor.example"}}
	k2 := newKey(t)
	renew := func(tn *testNode, csr []byte) reply {
		var body []byte
		if csr != nil {
			body = jsonBody(map[string]string{"csr": string(csr)})
		}
		return c.mtls(h, tn, "POST", "/v1/renew", body, "")
	}
	first := renew(f[0], csrFor(t, k2, names))
	if first.status != http.StatusCreated {
		t.Fatalf("renew: %d %s", first.status, first.body)
	}
	for _, tn := range c.nodes {
		again := renew(tn, csrFor(t, k2, names)) // a new CSR for the same key
		if again.status != http.StatusCreated || !bytes.Equal(again.body, first.body) {
			t.Fatalf("retry through %s: %d\n%s\nfirst answer:\n%s", tn.cfg.NodeName, again.status, again.body, first.body)
		}
	}
	for what, csr := range map[string][]byte{"the old key": nil, "a third key": csrFor(t, newKey(t), names)} {
		r := renew(f[1], csr)
		if r.status != http.StatusConflict || r.errorCode() != "certificate_renewed" || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("renewal with %s after rotation: %d %s", what, r.status, r.body)
		}
	}
}

// Over HTTP: the lineage's renewals past the burst get 429 with a
// Retry-After in whole seconds, on the node that counted them.
func TestRenewalsAreLimitedPerLineage(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.lineageLimits = authority.LineageLimits{RenewalsPerMinute: 1, RenewalBurst: 2}
	})
	n := c.nodes[0]
	h := c.enrollHolder(n, "limited.example")
	for i := range 2 { // down the lineage: each renewal makes a new certificate
		r := c.mtls(h, n, "POST", "/v1/renew", nil, "")
		if r.status != http.StatusCreated {
			t.Fatalf("renewal %d: %d %s", i+1, r.status, r.body)
		}
		var s signed
		r.decode(t, &s)
		h = c.holderOf(h.key, s)
	}
	r := c.mtls(h, n, "POST", "/v1/renew", nil, "")
	if r.status != http.StatusTooManyRequests || r.errorCode() != "rate_limited" {
		t.Fatalf("3rd renewal in a burst of 2: %d %s", r.status, r.body)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Fatalf("Retry-After %q, want 1..60 s at one per minute", r.header.Get("Retry-After"))
	}
}

// revoke_on_renew set through the admin API: the renewal's own entry
// revokes the old certificate (superseded), so OCSP says so wherever it is
// applied, and the CRL lists it within the interval; a retry still gets
// the successor.
func TestRevokeOnRenewOverTheAPI(t *testing.T) {
	c := newTestCluster(t, 3)
	var doc map[string]any
	c.do(c.nodes[0], "GET", "/v1/admin/provisioners/default", nil, c.admin).decode(t, &doc)
	doc["policy"].(map[string]any)["revoke_on_renew"] = true
	if r := c.do(c.nodes[1], "PUT", "/v1/admin/provisioners/default", doc, c.admin); r.status != http.StatusOK {
		t.Fatalf("set revoke_on_renew: %d %s", r.status, r.body)
	}
	c.do(c.nodes[2], "GET", "/v1/admin/provisioners/default", nil, c.admin).decode(t, &doc)
	if doc["policy"].(map[string]any)["revoke_on_renew"] != true {
		t.Fatalf("provisioner after update: %v", doc["policy"])
	}
	h := c.enrollHolder(c.nodes[0], "superseded.example")
	first := c.mtls(h, c.nodes[1], "POST", "/v1/renew", nil, "")
	if first.status != http.StatusCreated {
		t.Fatalf("renew: %d %s", first.status, first.body)
	}
	c.WaitConverged() // the renewal's entry, on every node
	for _, tn := range c.nodes {
		if st := c.ocspStatus(tn, h); st.Status != ocsp.Revoked || st.RevocationReason != ocsp.Superseded {
			t.Errorf("OCSP on %s for the renewed certificate: status %d reason %d", tn.cfg.NodeName, st.Status, st.RevocationReason)
		}
	}
	if again := c.mtls(h, c.nodes[2], "POST", "/v1/renew", nil, ""); again.status != http.StatusCreated || !bytes.Equal(again.body, first.body) {
		t.Fatalf("retry after revoke_on_renew: %d %s", again.status, again.body)
	}
	crl := c.crlListing(c.nodes[2], h.chain[0], h.cert.SerialNumber)
	if e := listed(crl, h.cert.SerialNumber); e.ReasonCode != ocsp.Superseded {
		t.Errorf("CRL reason %d", e.ReasonCode)
	}
}

package node

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
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
	waitFor(t, interval+5*time.Second, "every CRL to list every revocation", func() bool {
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

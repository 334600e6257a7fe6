package node

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumca/quorumca/cluster"
)

func TestThreeNodesIssueThroughAnyNode(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.Followers()
	// Mint through one follower, sign through the other: both writes are
	// forwarded to the leader by the nodes themselves.
	tok := c.mintToken(f[0], "1h", "dev1.example.internal")
	s := c.sign(f[1], tok, newCSR(t, newKey(t), "dev1.example.internal"))

	var roots struct{ Roots []string }
	c.do(f[0], "GET", "/v1/roots", nil, "").decode(t, &roots)
	pool := x509.NewCertPool()
	for _, r := range roots.Roots {
		pool.AddCert(parsePEMCert(t, r))
	}
	inter := x509.NewCertPool()
	for _, p := range s.Chain {
		inter.AddCert(parsePEMCert(t, p))
	}
	leaf := parsePEMCert(t, s.Certificate)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: "dev1.example.internal",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("certificate does not verify against /v1/roots: %v", err)
	}
	if leaf.SerialNumber.Text(16) != s.Serial || leaf.SerialNumber.BitLen() < 128 {
		t.Errorf("serial %s: %d bits", s.Serial, leaf.SerialNumber.BitLen())
	}

	// The record is readable on every node, right away (a node that has not
	// applied it yet catches up before answering).
	for _, tn := range c.nodes {
		r := c.do(tn, "GET", "/v1/certs/"+s.Serial, nil, "")
		if r.status != http.StatusOK {
			t.Fatalf("%s: GET cert: %d %s", tn.cfg.NodeName, r.status, r.body)
		}
		var rec struct {
			Serial, Certificate, Requester, Authority string
			TokenID                                   string    `json:"token_id"`
			SANs                                      []string  `json:"sans"`
			IssuedAt                                  time.Time `json:"issued_at"`
		}
		r.decode(t, &rec)
		if rec.Certificate != s.Certificate || !slices.Equal(rec.SANs, []string{"dev1.example.internal"}) || rec.IssuedAt.IsZero() ||
			rec.TokenID == "" || rec.Requester != "token:"+rec.TokenID || rec.Authority != "default" {
			t.Errorf("%s: record %+v", tn.cfg.NodeName, rec)
		}
	}

	// The leader timed the issue command; the follower timed the request.
	if m := c.do(c.Leader(), "GET", "/metrics", nil, ""); !strings.Contains(string(m.body),
		`quorumca_raft_apply_duration_seconds_count{command="issue",outcome="ok"} 1`) {
		t.Errorf("leader metrics lack the apply timing")
	}
	if m := c.do(f[1], "GET", "/metrics", nil, ""); !strings.Contains(string(m.body),
		`quorumca_http_request_duration_seconds_count{code="201",route="POST /v1/sign"} 1`) {
		t.Errorf("follower metrics lack the request timing")
	}

	// Health names the same leader everywhere.
	var leaders []string
	for _, tn := range c.nodes {
		var h cluster.Status
		c.do(tn, "GET", "/v1/health", nil, "").decode(t, &h)
		leaders = append(leaders, h.LeaderID)
	}
	if leaders[0] == "" || leaders[0] != leaders[1] || leaders[1] != leaders[2] {
		t.Errorf("leaders: %v", leaders)
	}
}

func TestLeaderFailoverAndCatchUp(t *testing.T) {
	c := newTestCluster(t, 3)
	before := c.sign(c.nodes[2], c.mintToken(c.nodes[2], "1h", "a.example"), newCSR(t, newKey(t), "a.example"))

	old := c.Leader()
	c.Stop(old)
	newLeader := c.Leader()
	if newLeader == old {
		t.Fatal("stopped node still leads")
	}
	// Issuance continues through any surviving node.
	var during []signed
	for i, tn := range c.running() {
		name := "during" + strconv.Itoa(i) + ".example"
		during = append(during, c.sign(tn, c.mintToken(tn, "1h", name), newCSR(t, newKey(t), name)))
	}

	c.Restart(old)
	c.WaitConverged()
	for _, s := range append(during, before) {
		if _, err := old.node.FSM().Cert(s.Serial); err != nil {
			t.Errorf("restarted node lacks %s: %v", s.Serial, err)
		}
	}
	// And it takes writes again.
	c.sign(old, c.mintToken(old, "1h", "after.example"), newCSR(t, newKey(t), "after.example"))
}

func TestWholeClusterRestartKeepsState(t *testing.T) {
	c := newTestCluster(t, 3)
	s := c.sign(c.nodes[1], c.mintToken(c.nodes[0], "1h", "keep.example"), newCSR(t, newKey(t), "keep.example"))
	digest := c.nodes[0].node.FSM().Digest()
	for _, tn := range c.nodes {
		c.Stop(tn)
	}
	for _, tn := range c.nodes {
		c.Restart(tn)
	}
	c.WaitConverged()
	if got := c.nodes[2].node.FSM().Digest(); got != digest {
		t.Error("state changed across a full restart")
	}
	if r := c.do(c.nodes[2], "GET", "/v1/certs/"+s.Serial, nil, ""); r.status != http.StatusOK {
		t.Errorf("after restart: %d %s", r.status, r.body)
	}
}

// A node added after the log was compacted gets the state as a snapshot.
func TestNewNodeRestoresSnapshot(t *testing.T) {
	timing := cluster.FastTiming()
	timing.TrailingLogs = 2
	timing.SnapshotThreshold = 1 << 20 // only the explicit snapshot below
	c := newTestClusterTiming(t, 3, timing)
	var serials []string
	for i := range 5 {
		name := "snap" + strconv.Itoa(i) + ".example"
		serials = append(serials, c.sign(c.nodes[i%3], c.mintToken(c.nodes[0], "1h", name), newCSR(t, newKey(t), name)).Serial)
	}
	leader := c.Leader()
	if err := leader.node.Cluster().Snapshot(); err != nil {
		t.Fatal(err)
	}
	// One more write after the snapshot, so the newcomer needs both.
	last := c.sign(leader, c.mintToken(leader, "1h", "post.example"), newCSR(t, newKey(t), "post.example"))

	n4 := c.AddNode(false)
	c.WaitConverged()
	if idx, _ := strconv.Atoi(n4.node.Cluster().Stats()["last_snapshot_index"]); idx == 0 {
		t.Fatal("the new node did not install a snapshot")
	}
	for _, s := range append(serials, last.Serial) {
		if _, err := n4.node.FSM().Cert(s); err != nil {
			t.Errorf("new node lacks %s: %v", s, err)
		}
	}
	// The restored node is a full member: it serves and forwards writes.
	c.sign(n4, c.mintToken(n4, "1h", "n4.example"), newCSR(t, newKey(t), "n4.example"))
}

// One token presented to two nodes at the same moment yields exactly one
// certificate.
func TestTokenRaceAcrossNodes(t *testing.T) {
	c := newTestCluster(t, 3)
	for round := range 10 {
		name := "race" + strconv.Itoa(round) + ".example"
		tok := c.mintToken(c.nodes[0], "1h", name)
		// Two keys: the same request sent twice would get the same
		// certificate back (a replay of a lost answer).
		csrs := [][]byte{newCSR(t, newKey(t), name), newCSR(t, newKey(t), name)}
		a, b := c.nodes[round%3], c.nodes[(round+1)%3]
		var wg sync.WaitGroup
		replies := make([]reply, 2)
		start := make(chan struct{})
		for i, tn := range []*testNode{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r, err := c.try(tn, "POST", "/v1/sign", map[string]string{"csr": string(csrs[i]), "token": tok}, "")
				if err != nil {
					r.status, r.body = -1, []byte(err.Error())
				}
				replies[i] = r
			}()
		}
		close(start)
		wg.Wait()
		ok, used := 0, 0
		for _, r := range replies {
			switch {
			case r.status == http.StatusCreated:
				ok++
			case r.status == http.StatusConflict && r.errorCode() == "token_used":
				used++
			default:
				t.Fatalf("round %d: unexpected reply %d %s", round, r.status, r.body)
			}
		}
		if ok != 1 || used != 1 {
			t.Fatalf("round %d: %d certificates, %d refusals", round, ok, used)
		}
	}
	c.WaitConverged()
	if n := c.nodes[0].node.FSM().CertCount(); n != 10 {
		t.Fatalf("%d certificate records, want 10", n)
	}
}

// Many writes at once through every node: followers forward them in
// batches and the leader commits them in batches, and still each token
// yields exactly one certificate and each request its own answer.
func TestConcurrentWritesThroughEveryNode(t *testing.T) {
	c := newTestCluster(t, 3)
	const tokens = 30
	type req struct {
		tok string
		csr []byte
		tn  *testNode
	}
	var reqs []req
	for i := range tokens {
		name := "batch" + strconv.Itoa(i) + ".example"
		tok := c.mintToken(c.nodes[i%3], "1h", name)
		for j := range 2 { // two keys race for each token, on different nodes
			reqs = append(reqs, req{tok, newCSR(t, newKey(t), name), c.nodes[(i+j)%3]})
		}
	}
	replies := make([]reply, len(reqs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, r := range reqs {
		wg.Go(func() {
			<-start
			rep, err := c.try(r.tn, "POST", "/v1/sign", map[string]string{"csr": string(r.csr), "token": r.tok}, "")
			if err != nil {
				rep.status, rep.body = -1, []byte(err.Error())
			}
			replies[i] = rep
		})
	}
	close(start)
	wg.Wait()
	won := map[string]string{} // token -> serial
	for i, rep := range replies {
		switch {
		case rep.status == http.StatusCreated:
			var s signed
			rep.decode(t, &s)
			if prev, dup := won[reqs[i].tok]; dup {
				t.Fatalf("one token, two certificates: %s and %s", prev, s.Serial)
			}
			won[reqs[i].tok] = s.Serial
			if cert := parsePEMCert(t, s.Certificate); cert.DNSNames[0] != "batch"+strconv.Itoa(i/2)+".example" {
				t.Fatalf("request %d got a certificate for %v", i, cert.DNSNames)
			}
		case rep.status == http.StatusConflict && rep.errorCode() == "token_used":
		default:
			t.Fatalf("request %d: %d %s", i, rep.status, rep.body)
		}
	}
	if len(won) != tokens {
		t.Fatalf("%d of %d tokens yielded a certificate", len(won), tokens)
	}
	c.WaitConverged()
	for _, tn := range c.nodes {
		if n := tn.node.FSM().CertCount(); n != tokens {
			t.Fatalf("%s holds %d certificate records, want %d", tn.cfg.NodeName, n, tokens)
		}
		for _, serial := range won {
			if _, err := tn.node.FSM().Cert(serial); err != nil {
				t.Fatalf("%s: certificate %s: %v", tn.cfg.NodeName, serial, err)
			}
		}
	}
}

func TestTokenExpires(t *testing.T) {
	c := newTestCluster(t, 1)
	tok := c.mintToken(c.nodes[0], "1m", "exp.example")
	c.clock.Advance(2 * time.Minute)
	r := c.do(c.nodes[0], "POST", "/v1/sign", map[string]string{"csr": string(newCSR(t, newKey(t), "exp.example")), "token": tok}, "")
	if r.status != http.StatusUnauthorized || r.errorCode() != "token_expired" {
		t.Fatalf("expired token: %d %s", r.status, r.body)
	}
}

// Clients of the surviving nodes never see the leader's loss: their writes
// are held while the election runs and then succeed.
func TestWritesContinueThroughLeaderLoss(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.Leader()
	survivors := c.Followers()
	const workers, perWorker = 4, 12
	var wg sync.WaitGroup
	serials := make(chan string, workers*perWorker)
	halfway := make(chan struct{}, workers)
	failures := make(chan string, workers*perWorker)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tn := survivors[w%2]
			key := newKey(t)
			for i := range perWorker {
				if i == perWorker/3 {
					halfway <- struct{}{}
				}
				name := "w" + strconv.Itoa(w) + "-" + strconv.Itoa(i) + ".example"
				serial, err := enroll(c, tn, key, name)
				if err != nil {
					failures <- err.Error()
					continue
				}
				serials <- serial
			}
		}()
	}
	for range workers {
		<-halfway
	}
	c.Stop(leader)
	wg.Wait()
	close(failures)
	close(serials)
	for f := range failures {
		t.Error(f)
	}
	newLeader := c.Leader()
	n := 0
	for s := range serials {
		n++
		if _, err := newLeader.node.FSM().Cert(s); err != nil {
			t.Errorf("acknowledged certificate %s missing on the new leader", s)
		}
	}
	if n != workers*perWorker {
		t.Errorf("%d certificates, want %d", n, workers*perWorker)
	}
}

// enroll mints a token and signs with it, for goroutines that may not call
// t.Fatal.
func enroll(c *testCluster, tn *testNode, key crypto.Signer, name string) (string, error) {
	r, err := c.try(tn, "POST", "/v1/admin/tokens", map[string]any{"sans": []string{name}}, c.admin)
	if err != nil || r.status != http.StatusCreated {
		return "", fmt.Errorf("mint: %v %d %s", err, r.status, r.body)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal(r.body, &tok); err != nil {
		return "", err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{name}}, key)
	if err != nil {
		return "", err
	}
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	r, err = c.try(tn, "POST", "/v1/sign", map[string]string{"csr": string(csr), "token": tok.Token}, "")
	if err != nil || r.status != http.StatusCreated {
		return "", fmt.Errorf("sign: %v %d %s", err, r.status, r.body)
	}
	var s signed
	if err := json.Unmarshal(r.body, &s); err != nil {
		return "", err
	}
	return s.Serial, nil
}

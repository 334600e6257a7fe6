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
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/freeport"
	"github.com/quorumca/quorumca/internal/testwait"
	"github.com/quorumca/quorumca/signer"
)

// testCluster runs real nodes in this process: real TCP on 127.0.0.1, real
// bolt files, Raft timings shortened.
type testCluster struct {
	t      *testing.T
	dir    string
	pki    *DevPKI
	secret string
	clock  *testClock
	timing cluster.Timing
	nodes  []*testNode
	client *http.Client
	// provisioners, if set before the first node starts, replace the
	// default one; authorities are created besides "default", which
	// noDefaultAuthority leaves out.
	provisioners       []*ProvisionerConfig
	authorities        []*AuthorityConfig
	noDefaultAuthority bool
	signer             signer.Options
	auditFiles         bool   // each node writes <dir>/audit-<name>.jsonl
	clusterCAKeyURI    string // if set, every node's cluster CA key
	proxyFrom          []string
	nodeCertTTL        time.Duration
	adminListen        bool
	pyroscope          *PyroscopeConfig
	admin              string // bootstrap admin token
	// configure, if set, adjusts every node's config.
	configure func(*Config)
	// crlInterval is every node's CRL interval (short by default, so
	// tests await a revocation's CRL briefly); lineageLimits their limits.
	crlInterval   time.Duration
	lineageLimits authority.LineageLimits
}

type testNode struct {
	cfg  Config
	node *Node // nil while stopped
}

type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

func testLogger() *slog.Logger {
	if os.Getenv("QUORUMCA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestCluster(t *testing.T, n int) *testCluster {
	return newTestClusterTiming(t, n, cluster.FastTiming())
}

func newTestClusterTiming(t *testing.T, n int, timing cluster.Timing) *testCluster {
	t.Helper()
	return newTestClusterWith(t, n, timing, nil)
}

// emptyCluster is a test cluster with its PKI and no node yet.
func emptyCluster(t *testing.T, timing cluster.Timing) *testCluster {
	t.Helper()
	dir := t.TempDir()
	pki, err := LoadOrCreateDevPKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{
		t: t, dir: dir, pki: pki, secret: "test-cluster-secret-0123456789", clock: &testClock{}, timing: timing,
		client: testClient(pki), crlInterval: 250 * time.Millisecond,
	}
	t.Cleanup(c.Close)
	return c
}

// newTestClusterWith lets setup adjust the cluster (provisioners, extra
// authorities) before the first node starts.
func newTestClusterWith(t *testing.T, n int, timing cluster.Timing, setup func(*testCluster)) *testCluster {
	t.Helper()
	c := emptyCluster(t, timing)
	dir := c.dir
	if setup != nil {
		setup(c)
	}
	for i := range n {
		c.AddNode(i == 0)
	}
	c.WaitConverged()
	// The bootstrap node writes the token file after the admin is committed.
	testwait.For(t, 10*time.Second, "the admin token file", func() bool {
		_, err := os.Stat(filepath.Join(dir, "admin.token"))
		return err == nil
	})
	b, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c.admin = strings.TrimSpace(string(b))
	if !c.noDefaultAuthority {
		// The leader signs the root's first CRL on its own after start:
		// once it is there, nothing writes unless a test asks.
		testwait.For(t, 10*time.Second, "the root's first CRL", func() bool {
			return c.do(c.nodes[0], "GET", "/v1/authorities/default/crls.pem", nil, "").status == http.StatusOK
		})
	}
	return c
}

// clusterCAKey is the cluster CA key every node of the test cluster names.
func (c *testCluster) clusterCAKey() string {
	c.t.Helper()
	uri, err := c.pki.ClusterCAKey()
	if err != nil {
		c.t.Fatal(err)
	}
	return uri
}

// testClient trusts the dev root.
func testClient(pki *DevPKI) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(pki.Root())
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 64}}
}

func readFileTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// AddNode starts a new node; the first bootstraps, the rest join the first.
func (c *testCluster) AddNode(bootstrap bool) *testNode {
	c.t.Helper()
	return c.addNode(bootstrap, nil)
}

// addNodeWith starts a joining node whose config mutate adjusts.
func (c *testCluster) addNodeWith(mutate func(*Config)) *testNode {
	c.t.Helper()
	return c.addNode(false, mutate)
}

func (c *testCluster) addNode(bootstrap bool, mutate func(*Config)) *testNode {
	c.t.Helper()
	name := fmt.Sprintf("n%d", len(c.nodes)+1)
	ndir := filepath.Join(c.dir, name)
	// The API's TLS key stays out of the data dir, which must hold no key.
	certFile, keyFile, err := c.pki.NodeTLS(filepath.Join(c.dir, "tls-"+name), []string{"127.0.0.1", "localhost"})
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := Config{
		NodeName: name, DataDir: ndir, HTTPListen: freeport.For(c.t),
		APIListen: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: keyFile,
		RaftListen: "127.0.0.1:0", JoinSecret: c.secret, ClusterCAKey: c.clusterCAKey(),
		Bootstrap: bootstrap, Timing: c.timing, HoldTimeout: 5 * time.Second,
		Now: c.clock.Now, Logger: testLogger().With("test_node", name), AllowInsecureSoftSigner: true,
		Signer: c.signer,
	}
	if bootstrap {
		cfg.Authorities = c.authorities
		if !c.noDefaultAuthority {
			cfg.Authorities = append([]*AuthorityConfig{c.pki.Authority("http://" + cfg.HTTPListen)}, c.authorities...)
		}
		cfg.Provisioners = c.provisioners
		cfg.BootstrapAdminTokenFile = filepath.Join(c.dir, "admin.token")
	} else {
		cfg.Join = []string{"https://" + c.nodes[0].cfg.APIListen}
	}
	if c.auditFiles {
		cfg.AuditFile = filepath.Join(c.dir, "audit-"+name+".jsonl")
	}
	cfg.ProxyProtocolFrom, cfg.Pyroscope, cfg.NodeCertTTL = c.proxyFrom, c.pyroscope, c.nodeCertTTL
	cfg.CRLInterval, cfg.LineageLimits = c.crlInterval, c.lineageLimits
	if c.adminListen {
		cfg.AdminListen = "127.0.0.1:0"
	}
	if c.clusterCAKeyURI != "" {
		cfg.ClusterCAKey = c.clusterCAKeyURI
	}
	if c.configure != nil {
		c.configure(&cfg)
	}
	if mutate != nil {
		mutate(&cfg)
	}
	tn := &testNode{cfg: cfg}
	c.nodes = append(c.nodes, tn)
	c.start(tn)
	return tn
}

func (c *testCluster) start(tn *testNode) {
	c.t.Helper()
	n, err := Start(tn.cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", tn.cfg.NodeName, err)
	}
	tn.node = n
	// Restarts reuse the same ports: Raft's configuration names them.
	tn.cfg.APIListen = n.APIAddr()
	tn.cfg.RaftListen = n.Cluster().RaftAddr()
}

// Stop shuts a node down, keeping its data dir.
func (c *testCluster) Stop(tn *testNode) {
	c.t.Helper()
	if err := tn.node.Close(); err != nil {
		c.t.Logf("stop %s: %v", tn.cfg.NodeName, err)
	}
	tn.node = nil
}

// Restart starts a stopped node from its data dir.
func (c *testCluster) Restart(tn *testNode) { c.t.Helper(); c.start(tn) }

func (c *testCluster) Close() {
	for _, tn := range c.nodes {
		if tn.node != nil {
			tn.node.Close()
			tn.node = nil
		}
	}
}

func (c *testCluster) running() []*testNode {
	var out []*testNode
	for _, tn := range c.nodes {
		if tn.node != nil {
			out = append(out, tn)
		}
	}
	return out
}

// Leader returns the running node that leads, waiting for one.
func (c *testCluster) Leader() *testNode {
	c.t.Helper()
	var leader *testNode
	testwait.For(c.t, 10*time.Second, "a leader", func() bool {
		for _, tn := range c.running() {
			if tn.node.Cluster().IsLeader() {
				leader = tn
				return true
			}
		}
		return false
	})
	return leader
}

// Followers returns the running nodes that do not lead.
func (c *testCluster) Followers() []*testNode {
	l := c.Leader()
	var out []*testNode
	for _, tn := range c.running() {
		if tn != l {
			out = append(out, tn)
		}
	}
	return out
}

// WaitConverged waits until every running node is a voter, agrees on the
// leader, has the authority, its first CRL and the admin token, and holds
// the same state.
func (c *testCluster) WaitConverged() {
	c.t.Helper()
	c.waitConverged(true)
}

// WaitMembers waits for what WaitConverged does but identical state: under
// continuous writes, nodes' states are equal only by chance at any moment.
func (c *testCluster) WaitMembers() {
	c.t.Helper()
	c.waitConverged(false)
}

func (c *testCluster) waitConverged(sameState bool) {
	c.t.Helper()
	testwait.For(c.t, 20*time.Second, "cluster to converge", func() bool {
		run := c.running()
		if len(run) == 0 {
			return false
		}
		servers, err := run[0].node.Cluster().Servers()
		if err != nil || len(servers) < len(run) {
			return false
		}
		first := run[0].node.Cluster().Status()
		for _, tn := range run {
			// The leader writes the newest log format once it has heard
			// from every server: before, commands that need it fall back.
			// (A stopped server holds it back until it returns.)
			if st := tn.node.Cluster().Status(); st.LogFormat != nil && *st.LogFormat != fsm.LogFormat && len(servers) == len(run) {
				return false
			}
			st := tn.node.Cluster().Status()
			f := tn.node.FSM()
			if st.LeaderID == "" || st.LeaderID != first.LeaderID || f.AdminCount() == 0 {
				return false
			}
			as, _ := f.Authorities()
			if len(as) < len(c.authorities) || (!c.noDefaultAuthority && len(as) < 1+len(c.authorities)) {
				return false
			}
			for _, a := range as {
				for _, iss := range a.Issuers {
					if _, err := f.CRL(a.Name, iss.ID); err != nil {
						return false // signed right after the authority is created
					}
				}
			}
			api := tn.node.APIAddr()
			if tn.cfg.APIAdvertise != "" {
				api = tn.cfg.APIAdvertise
			}
			if n, err := f.Node(tn.cfg.NodeName); err != nil || n.APIAddr != api {
				return false
			}
			if sameState && f.Digest() != run[0].node.FSM().Digest() {
				return false
			}
			// And the entry that marks that format in the state (the
			// digest leaves it out; the audit log has it) is applied.
			if sameState && len(servers) == len(run) && f.HighestLogFormat() != fsm.LogFormat {
				return false
			}
		}
		return true
	})
}

// reply is an HTTP response with its JSON body.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r reply) errorCode() string {
	var e struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// do sends a request to a node. body may be nil, []byte (sent as is) or a
// value encoded as JSON.
func (c *testCluster) do(tn *testNode, method, path string, body any, bearer string) reply {
	c.t.Helper()
	r, err := c.try(tn, method, path, body, bearer)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// try is do for goroutines other than the test's: it returns errors.
func (c *testCluster) try(tn *testNode, method, path string, body any, bearer string) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, "https://"+tn.node.APIAddr()+path, rd)
	if err != nil {
		return reply{}, err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// mintToken asks tn for an enrollment token for names.
func (c *testCluster) mintToken(tn *testNode, ttl string, names ...string) string {
	c.t.Helper()
	r := c.do(tn, "POST", "/v1/admin/tokens", map[string]any{"sans": names, "ttl": ttl}, c.admin)
	if r.status != http.StatusCreated {
		c.t.Fatalf("mint token: %d %s", r.status, r.body)
	}
	var out struct{ Token string }
	r.decode(c.t, &out)
	return out.Token
}

type signed struct {
	Serial      string   `json:"serial"`
	Certificate string   `json:"certificate"`
	Chain       []string `json:"chain"`
}

// sign asks tn for a certificate and expects success.
func (c *testCluster) sign(tn *testNode, token string, csr []byte) signed {
	c.t.Helper()
	r := c.do(tn, "POST", "/v1/sign", map[string]string{"csr": string(csr), "token": token}, "")
	if r.status != http.StatusCreated {
		c.t.Fatalf("sign on %s: %d %s", tn.cfg.NodeName, r.status, r.body)
	}
	var s signed
	r.decode(c.t, &s)
	return s
}

func newKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newCSR makes a PEM CSR for names (the first is the common name).
func newCSR(t *testing.T, key crypto.Signer, names ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func parsePEMCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode([]byte(s))
	if blk == nil {
		t.Fatalf("no PEM in %q", s)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func jsonEncode(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

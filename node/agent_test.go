package node

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumca/quorumca/agent"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/freeport"
	"github.com/quorumca/quorumca/internal/testwait"
	"github.com/quorumca/quorumca/signer/soft"
)

// tcpProxy stands in for the load balancer in front of the nodes: it
// passes TCP through (TLS ends at the nodes, so mTLS renewal works), tries
// backends in turn, and the test can take it away and bring it back.
type tcpProxy struct {
	t        *testing.T
	addr     string
	backends func() []string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	next  int
}

func newTCPProxy(t *testing.T, backends func() []string) *tcpProxy {
	t.Helper()
	p := &tcpProxy{t: t, backends: backends, conns: map[net.Conn]bool{}}
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

func (p *tcpProxy) URL() string { return "https://" + p.addr }

// Start listens (again, on the same address).
func (p *tcpProxy) Start() {
	p.t.Helper()
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	testwait.For(p.t, 10*time.Second, "the proxy's address to be free", func() bool {
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go p.serve(ln)
}

// Stop closes the listener and every connection through it.
func (p *tcpProxy) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *tcpProxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

func (p *tcpProxy) pipe(c net.Conn) {
	if !p.track(c) {
		c.Close()
		return
	}
	backends := p.backends()
	var b net.Conn
	for range backends {
		p.mu.Lock()
		addr := backends[p.next%len(backends)]
		p.next++
		p.mu.Unlock()
		var err error
		if b, err = net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
			break
		}
	}
	if b == nil || !p.track(b) {
		c.Close()
		if b != nil {
			b.Close()
		}
		return
	}
	go func() { io.Copy(b, c); b.Close() }()
	io.Copy(c, b)
	c.Close()
}

// agentCluster is a 3-node cluster whose default provisioner issues
// certificates of ttl with a renewal grace of a minute, behind a proxy.
func agentCluster(t *testing.T, ttl time.Duration) (*testCluster, *tcpProxy) {
	return agentClusterTiming(t, ttl, cluster.FastTiming())
}

func agentClusterTiming(t *testing.T, ttl time.Duration, timing cluster.Timing) (*testCluster, *tcpProxy) {
	c := newTestClusterWith(t, 3, timing, func(c *testCluster) {
		pol := authority.DefaultPolicy()
		pol.DefaultTTL, pol.MaxTTL, pol.RenewGrace = ttl, time.Hour, time.Minute
		c.provisioners = []*ProvisionerConfig{{Provisioner: fsm.Provisioner{Name: "default", Kind: fsm.KindEnrollmentToken, Authority: "default", Policy: pol}}}
	})
	// Nodes restart on the same ports.
	var addrs []string
	for _, tn := range c.nodes {
		addrs = append(addrs, tn.node.APIAddr())
	}
	p := newTCPProxy(t, func() []string { return addrs })
	return c, p
}

// agentFiles is one device's directory.
type agentFiles struct{ dir string }

func (f agentFiles) path(name string) string { return filepath.Join(f.dir, name) }

// newAgentConfig writes a bundle with a fresh token for names and returns
// an agent config for it; fast retries, for tests.
func (c *testCluster) newAgentConfig(addr string, names ...string) (agent.Config, agentFiles) {
	c.t.Helper()
	return c.newAgentConfigWithToken(addr, c.mintToken(c.nodes[0], "1h", names...), names...)
}

func (c *testCluster) newAgentConfigWithToken(addr, token string, names ...string) (agent.Config, agentFiles) {
	c.t.Helper()
	return c.newAgentConfigIn(c.t.TempDir(), addr, token, names...)
}

// newAgentConfigIn is newAgentConfigWithToken with the agent's files in dir.
func (c *testCluster) newAgentConfigIn(dir, addr, token string, names ...string) (agent.Config, agentFiles) {
	c.t.Helper()
	f := agentFiles{dir: dir}
	roots, err := os.ReadFile(c.pki.RootFile)
	if err != nil {
		c.t.Fatal(err)
	}
	b := agent.Bundle{Addrs: []string{addr}, Roots: string(roots), Token: token, Names: names}
	if err := b.Write(f.path("bundle.json")); err != nil {
		c.t.Fatal(err)
	}
	return agent.Config{
		BundleFile: f.path("bundle.json"), CertFile: f.path("cert.pem"), KeyFile: f.path("key.pem"),
		ChainFile: f.path("chain.pem"), RootsFile: f.path("roots.pem"), StateFile: f.path("state.json"),
		BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second, Timeout: 10 * time.Second,
		Logger: testLogger(),
	}, f
}

// checkAgentFiles asserts what a service reading the files relies on: the
// key matches the certificate, and the certificate verifies with the chain
// file and the trust bundle. It returns the certificate.
func checkAgentFiles(cfg agent.Config) (*x509.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	rb, err := os.ReadFile(cfg.RootsFile)
	if err != nil {
		return nil, err
	}
	cb, err := os.ReadFile(cfg.ChainFile)
	if err != nil {
		return nil, err
	}
	if !roots.AppendCertsFromPEM(rb) || !inter.AppendCertsFromPEM(cb) {
		return nil, errors.New("roots or chain file holds no certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, err
	}
	if st, err := os.Stat(cfg.KeyFile); err != nil || st.Mode().Perm() != 0o600 {
		return nil, errors.New("key file is not mode 0600")
	}
	return leaf, nil
}

// runAgent runs an agent until ctx ends; the returned channel gets Run's
// result.
func runAgent(t *testing.T, ctx context.Context, cfg agent.Config) <-chan error {
	t.Helper()
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return done
}

func readAgentState(t *testing.T, cfg agent.Config) agent.State {
	t.Helper()
	st, err := agent.ReadState(cfg.StateFile)
	if err != nil {
		return agent.State{}
	}
	return *st
}

// Through a TCP proxy to a 3-node cluster, agents enroll and then renew
// again and again; after every write the files hold a matching key and
// certificate that verifies. One agent rotates its key at every renewal,
// the other keeps it.
func TestAgentEnrollsAndKeepsRenewing(t *testing.T) {
	c, proxy := agentCluster(t, 6*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type seen struct {
		mu      sync.Mutex
		serials []string
		keys    []string
	}
	var runs []*seen
	var cfgs []agent.Config
	for i, rotate := range []bool{false, true} {
		cfg, _ := c.newAgentConfig(proxy.URL(), []string{"keeps-key.example", "rotates-key.example"}[i], "10.0.0.1")
		cfg.RotateKey = rotate
		if rotate {
			// This one's first address is dead: it goes on to the next.
			b, err := agent.ReadBundle(cfg.BundleFile)
			if err != nil {
				t.Fatal(err)
			}
			b.Addrs = []string{"https://" + freeport.For(t), proxy.URL()}
			if err := b.Write(cfg.BundleFile); err != nil {
				t.Fatal(err)
			}
		}
		s := &seen{}
		cfg.AfterWrite = func() {
			leaf, err := checkAgentFiles(cfg)
			if err != nil {
				t.Errorf("after a write (rotate=%v): %v", rotate, err)
				return
			}
			pub, _ := x509.MarshalPKIXPublicKey(leaf.PublicKey)
			s.mu.Lock()
			s.serials = append(s.serials, leaf.SerialNumber.String())
			s.keys = append(s.keys, string(pub))
			s.mu.Unlock()
		}
		runs, cfgs = append(runs, s), append(cfgs, cfg)
		runAgent(t, ctx, cfg)
	}
	testwait.For(t, 60*time.Second, "each agent to enroll and renew three times", func() bool {
		for _, s := range runs {
			s.mu.Lock()
			n := len(s.serials)
			s.mu.Unlock()
			if n < 4 {
				return false
			}
		}
		return true
	})
	cancel()
	for i, s := range runs {
		s.mu.Lock()
		distinctSerials, distinctKeys := map[string]bool{}, map[string]bool{}
		for j := range s.serials {
			distinctSerials[s.serials[j]], distinctKeys[s.keys[j]] = true, true
		}
		if len(distinctSerials) != len(s.serials) {
			t.Errorf("agent %d: a serial came twice: %v", i, s.serials)
		}
		rotate := cfgs[i].RotateKey
		if rotate && len(distinctKeys) != len(s.keys) || !rotate && len(distinctKeys) != 1 {
			t.Errorf("agent %d (rotate=%v): %d keys over %d certificates", i, rotate, len(distinctKeys), len(s.keys))
		}
		s.mu.Unlock()
		b, err := agent.ReadBundle(cfgs[i].BundleFile)
		if err != nil || b.Token != "" {
			t.Errorf("agent %d: the used token is still in the bundle (%v)", i, err)
		}
		if st := readAgentState(t, cfgs[i]); st.Status != agent.StatusOK || st.Renewals < 3 {
			t.Errorf("agent %d: state %+v", i, st)
		}
	}
}

// With the proxy gone for longer than the certificate lives, the agent
// backs off, and when the proxy returns it renews in the grace window.
func TestAgentRenewsInTheGraceWindowAfterAnOutage(t *testing.T) {
	c, proxy := agentCluster(t, 5*time.Second)
	cfg, _ := c.newAgentConfig(proxy.URL(), "outage.example")
	var writes atomic.Int32
	cfg.AfterWrite = func() {
		if _, err := checkAgentFiles(cfg); err != nil {
			t.Errorf("after a write: %v", err)
		}
		writes.Add(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runAgent(t, ctx, cfg)
	testwait.For(t, 20*time.Second, "enrollment", func() bool { return writes.Load() == 1 })
	proxy.Stop()
	first := readAgentState(t, cfg)
	var failures int
	testwait.For(t, 30*time.Second, "the certificate to expire while the agent fails", func() bool {
		failures = readAgentState(t, cfg).Failures
		return time.Now().After(first.NotAfter.Add(time.Second)) && failures >= 2
	})
	if writes.Load() != 1 {
		t.Fatalf("%d writes while the CA was unreachable", writes.Load())
	}
	if _, err := os.Stat(cfg.CertFile); err != nil {
		t.Fatalf("the expired certificate was removed before a new one came: %v", err)
	}
	proxy.Start()
	testwait.For(t, 30*time.Second, "a renewal once the proxy is back", func() bool { return writes.Load() >= 2 })
	st := readAgentState(t, cfg)
	if st.Serial == first.Serial || !st.Obtained.After(first.NotAfter) {
		t.Fatalf("renewal %s obtained %s; the first certificate expired %s", st.Serial, st.Obtained, first.NotAfter)
	}
	t.Logf("renewed %s after expiry (%d failed attempts before)", st.Obtained.Sub(first.NotAfter).Round(time.Millisecond), failures)
}

// A revoked certificate stops the agent: Run returns ErrStopped, the state
// says why, and the files stay.
func TestAgentStopsWhenRevoked(t *testing.T) {
	c, proxy := agentCluster(t, 6*time.Second)
	cfg, _ := c.newAgentConfig(proxy.URL(), "revoked.example")
	enrolled := make(chan struct{}, 4)
	cfg.AfterWrite = func() { enrolled <- struct{}{} }
	done := runAgent(t, context.Background(), cfg)
	<-enrolled
	st := readAgentState(t, cfg)
	r := c.do(c.nodes[1], "POST", "/v1/revoke", map[string]string{"serial": st.Serial, "reason": "keyCompromise"}, c.admin)
	if r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	select {
	case err := <-done:
		if !errors.Is(err, agent.ErrStopped) || !strings.Contains(err.Error(), "certificate_revoked") {
			t.Fatalf("agent ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop after its certificate was revoked")
	}
	st = readAgentState(t, cfg)
	if st.Status != agent.StatusStopped || !strings.Contains(st.Reason, "revoked") {
		t.Fatalf("state after revocation: %+v", st)
	}
	if _, err := checkAgentFiles(cfg); err != nil {
		t.Fatalf("files after the stop: %v", err)
	}
}

// The running agent asks OCSP at each check (every CheckInterval): a
// revoked certificate stops it long before its renewal is due.
func TestAgentNoticesRevocationThroughOCSP(t *testing.T) {
	c, proxy := agentCluster(t, 30*time.Minute)
	cfg, _ := c.newAgentConfig(proxy.URL(), "ocsp-revoked.example")
	cfg.CheckInterval = 200 * time.Millisecond
	done := runAgent(t, context.Background(), cfg)
	testwait.For(t, 20*time.Second, "OCSP to call the enrolled certificate good", func() bool {
		return readAgentState(t, cfg).Revocation == agent.RevocationGood
	})
	st := readAgentState(t, cfg)
	r := c.do(c.nodes[2], "POST", "/v1/revoke", map[string]string{"serial": st.Serial, "reason": "keyCompromise"}, c.admin)
	if r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	select {
	case err := <-done:
		if !errors.Is(err, agent.ErrStopped) || !strings.Contains(err.Error(), "OCSP") || !strings.Contains(err.Error(), "keyCompromise") {
			t.Fatalf("agent ended with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not notice the revocation")
	}
	st = readAgentState(t, cfg)
	if st.Status != agent.StatusStopped || st.Revocation != agent.RevocationRevoked || st.Renewals != 0 || st.Failures != 1 || st.LastErrorAt.IsZero() {
		t.Fatalf("state after revocation: %+v", st)
	}
}

// Root rotation: an issuer under a new root joins the authority; agents
// take the new root into their trust bundle at their next check, renew
// into the new chain, and keep verifying the CA once the nodes serve API
// certificates under the new root.
func TestAgentFollowsARootRotation(t *testing.T) {
	c, proxy := agentCluster(t, 6*time.Second)
	cfg, _ := c.newAgentConfig(proxy.URL(), "rotation.example")
	cfg.CheckInterval = 300 * time.Millisecond
	var mu sync.Mutex
	var issuers []string
	cfg.AfterWrite = func() {
		leaf, err := checkAgentFiles(cfg)
		if err != nil {
			t.Errorf("after a write: %v", err)
			return
		}
		mu.Lock()
		issuers = append(issuers, leaf.Issuer.CommonName)
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runAgent(t, ctx, cfg)
	testwait.For(t, 20*time.Second, "enrollment", func() bool { mu.Lock(); defer mu.Unlock(); return len(issuers) == 1 })

	// A new root and intermediate, made offline, imported as a rotation.
	next := newOfflineRoot(t, c.dir, "rotated root")
	r := c.do(c.nodes[0], "POST", "/v1/admin/authorities/import", map[string]any{
		"name": "default", "root": string(next.rootPEM), "chain": string(next.interPEM), "key": next.interKeyURI, "new_root": true,
	}, c.admin)
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	testwait.For(t, 20*time.Second, "the new root in the agent's trust bundle", func() bool {
		return fileHasCert(cfg.RootsFile, next.root)
	})
	testwait.For(t, 20*time.Second, "a renewal under the new intermediate", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return issuers[len(issuers)-1] == next.inter.Subject.CommonName
	})

	// The nodes now present API certificates under the new root only.
	bundle := filepath.Join(c.dir, "both-roots.pem")
	old, _ := os.ReadFile(c.pki.RootFile)
	if err := os.WriteFile(bundle, append(old, next.rootPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tn := range c.nodes {
		c.Stop(tn)
		tn.cfg.TLSCertFile, tn.cfg.TLSKeyFile = next.serverCert(t, filepath.Join(c.dir, "tls2-"+tn.cfg.NodeName))
		tn.cfg.CAFile = bundle
		c.start(tn)
	}
	mu.Lock()
	before := len(issuers)
	mu.Unlock()
	testwait.For(t, 30*time.Second, "a renewal from nodes with new API certificates", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(issuers) >= before+2
	})
	if st := readAgentState(t, cfg); st.Status != agent.StatusOK {
		t.Fatalf("state: %+v", st)
	}
}

// A device whose enrollment answer was lost asks again with the same key
// and gets the same certificate; anyone else gets token_used.
func TestEnrollmentReplayWithTheSameKey(t *testing.T) {
	c := newTestCluster(t, 3)
	tok := c.mintToken(c.nodes[0], "1h", "replay.example")
	key := newKey(t)
	csr := newCSR(t, key, "replay.example")
	first := c.sign(c.nodes[1], tok, csr)
	again := c.sign(c.nodes[2], tok, newCSR(t, key, "replay.example"))
	if again.Serial != first.Serial || again.Certificate != first.Certificate {
		t.Fatalf("replay gave %s, first %s", again.Serial, first.Serial)
	}
	r := c.do(c.nodes[0], "POST", "/v1/sign", map[string]string{"csr": string(newCSR(t, newKey(t), "replay.example")), "token": tok}, "")
	if r.status != http.StatusUnauthorized && r.status != http.StatusConflict || r.errorCode() != "token_used" {
		t.Fatalf("another key with a used token: %d %s", r.status, r.body)
	}
	// The same request racing itself through two nodes: one certificate,
	// both answers carry it.
	tok = c.mintToken(c.nodes[0], "1h", "replay2.example")
	csr = newCSR(t, key, "replay2.example")
	var wg sync.WaitGroup
	replies := make([]reply, 2)
	for i, tn := range []*testNode{c.nodes[1], c.nodes[2]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], _ = c.try(tn, "POST", "/v1/sign", map[string]string{"csr": string(csr), "token": tok}, "")
		}()
	}
	wg.Wait()
	var serials [2]string
	for i, r := range replies {
		var s signed
		if r.status != http.StatusCreated || json.Unmarshal(r.body, &s) != nil {
			t.Fatalf("racing replay %d: %d %s", i, r.status, r.body)
		}
		serials[i] = s.Serial
	}
	if serials[0] != serials[1] {
		t.Fatalf("one token, two certificates: %v", serials)
	}
}

// counting is a slog handler that counts warnings and errors.
type counting struct {
	slog.Handler
	n *atomic.Int64
}

func (h counting) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

// firstLines keeps the first lines written to it.
type firstLines struct {
	mu    sync.Mutex
	lines []string
}

func (f *firstLines) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lines) < 10 {
		f.lines = append(f.lines, strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (h counting) WithAttrs(as []slog.Attr) slog.Handler {
	return counting{h.Handler.WithAttrs(as), h.n}
}

func (h counting) WithGroup(g string) slog.Handler { return counting{h.Handler.WithGroup(g), h.n} }

// offlineRoot is a root and intermediate made outside the cluster, as an
// operator would for a root rotation.
type offlineRoot struct {
	root, inter       *x509.Certificate
	rootKey           crypto.Signer
	rootPEM, interPEM []byte
	interKeyURI       string
}

func newOfflineRoot(t *testing.T, dir, cn string) *offlineRoot {
	t.Helper()
	_, rootKey, err := soft.Generate(filepath.Join(dir, "next-root.key"))
	if err != nil {
		t.Fatal(err)
	}
	interURI, interKey, err := soft.Generate(filepath.Join(dir, "next-inter.key"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := authority.CreateRoot(rootKey, cn, 10*365*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	inter, err := authority.CreateIntermediate(root, rootKey, interKey.Public(), cn+" issuing CA", 5*365*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &offlineRoot{root: root, inter: inter, rootKey: rootKey, interKeyURI: interURI,
		rootPEM: authority.EncodePEM(root.Raw), interPEM: authority.EncodePEM(inter.Raw)}
}

// serverCert makes an API certificate for 127.0.0.1 under the root.
func (o *offlineRoot) serverCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(dir, "tls.key")
	_, k, err := soft.Generate(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := authority.CreateServerCert(o.root, o.rootKey, k.Public(), []string{"127.0.0.1", "localhost"}, 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, "tls.pem")
	if err := os.WriteFile(certFile, authority.EncodePEM(c.Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// fileHasCert reports whether a PEM file holds c.
func fileHasCert(path string, c *x509.Certificate) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return false
		}
		if bytes.Equal(b.Bytes, c.Raw) {
			return true
		}
	}
}

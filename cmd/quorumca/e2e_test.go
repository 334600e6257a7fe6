//go:build !agent

package main

// These tests run the real binary as separate processes. They need curl and
// openssl (the dev example uses them) and fail, not skip, without them.

import (
	"bytes"
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
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quorumca/quorumca/internal/freeport"
	"github.com/quorumca/quorumca/internal/testwait"
	"github.com/quorumca/quorumca/node"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "quorumca-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "quorumca")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build quorumca: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required by this test and is not installed (Debian: apt-get install %s)", tool, tool)
		}
	}
}

// freeBase finds a port p such that p..p+n-1 and the matching Raft ports
// are free, below the kernel's ephemeral range (freeport), so only another
// test picking at random could take one before we bind it.
func freeBase(t *testing.T, n int) int {
	t.Helper()
	lo, hi := freeport.Range()
	span := hi - lo - n - raftPortOffset
	if span < 100 {
		lo, span = 20000, 20000 // an ephemeral range that starts low: take our chances
	}
	for try := 0; try < 50; try++ {
		base := lo + mrand.IntN(span)
		ok := true
		for i := range n {
			for _, p := range []int{base + i, base + i + raftPortOffset} {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free ports")
	return 0
}

// proc is a quorumca process whose output is collected.
type proc struct {
	cmd *exec.Cmd
	out *testwait.Buffer
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startWith(t, binary, nil, args...)
}

// startDev runs a one-node dev CA with its data in dir and waits for its
// banner; env points the client commands at it.
func startDev(t *testing.T, dir string) (p *proc, addr string, env []string) {
	t.Helper()
	addr = fmt.Sprintf("https://127.0.0.1:%d", freeBase(t, 1))
	p = start(t, "dev", "-data-dir", dir, "-listen", strings.TrimPrefix(addr, "https://"))
	testwait.For(t, 60*time.Second, "the dev banner", func() bool { return strings.Contains(p.out.String(), "Press Ctrl-C") })
	return p, addr, []string{"QUORUMCA_ADDR=" + addr, "QUORUMCA_CA_FILE=" + filepath.Join(dir, "root.pem"),
		"QUORUMCA_ADMIN_TOKEN_FILE=" + filepath.Join(dir, "admin.token")}
}

// startWith runs bin with extra environment variables.
func startWith(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: new(testwait.Buffer)}
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("output of %v:\n%s", args, p.out)
		}
	})
	return p
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

func httpsClient(t *testing.T, rootFile string) *http.Client {
	t.Helper()
	b, err := os.ReadFile(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

type health struct {
	Node      string `json:"node"`
	RaftState string `json:"raft_state"`
	Leader    string `json:"leader"`
}

func getHealth(c *http.Client, addr string) (health, bool) {
	var h health
	resp, err := c.Get("https://" + addr + "/v1/health")
	if err != nil {
		return h, false
	}
	defer resp.Body.Close()
	return h, resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&h) == nil
}

func postJSON(t *testing.T, c *http.Client, url, bearer string, in, out any) int {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Logf("POST %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil && json.Unmarshal(data, out) != nil {
		t.Fatalf("%s: %d %s", url, resp.StatusCode, data)
	}
	return resp.StatusCode
}

// issue mints a token through one address and signs through another.
func issue(t *testing.T, c *http.Client, admin, mintAddr, signAddr, name string) string {
	t.Helper()
	var tok struct{ Token string }
	if st := postJSON(t, c, "https://"+mintAddr+"/v1/admin/tokens", admin, map[string]any{"sans": []string{name}}, &tok); st != 201 {
		t.Fatalf("mint: %d", st)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, k)
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	var s struct{ Serial string }
	if st := postJSON(t, c, "https://"+signAddr+"/v1/sign", "", map[string]string{"csr": string(csr), "token": tok.Token}, &s); st != 201 {
		t.Fatalf("sign via %s: %d", signAddr, st)
	}
	return s.Serial
}

func TestDevExampleGetsCertificate(t *testing.T) {
	requireTools(t, "curl", "openssl")
	dir := t.TempDir()
	base := freeBase(t, 1)
	p := start(t, "dev", "-data-dir", dir, "-listen", fmt.Sprintf("127.0.0.1:%d", base))
	testwait.For(t, 60*time.Second, "the dev banner", func() bool { return strings.Contains(p.out.String(), "Press Ctrl-C") })

	// The banner's fingerprint is the root's, as openssl computes it.
	fp, err := exec.Command("openssl", "x509", "-in", filepath.Join(dir, "root.pem"), "-noout", "-fingerprint", "-sha256").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(fp[bytes.IndexByte(fp, '=')+1:]))
	if !strings.Contains(p.out.String(), want) {
		t.Errorf("banner lacks the root fingerprint %s", want)
	}
	admin, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil || !strings.Contains(p.out.String(), strings.TrimSpace(string(admin))) {
		t.Errorf("admin token file and banner disagree: %v", err)
	}

	// Run the printed example as a user would.
	work := t.TempDir()
	cmd := exec.Command("sh", filepath.Join(dir, "example.sh"))
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "dev1.pem: OK") || !strings.Contains(string(out), "dev1-renewed.pem: OK") ||
		!strings.Contains(string(out), "dev1-renewed.pem: good") {
		t.Fatalf("example failed: %v\n%s", err, out)
	}
	if !strings.Contains(p.out.String(), "openssl verify") {
		t.Error("banner does not show the example")
	}
	// Its OCSP answers come from a delegated responder, which openssl
	// accepts on the root's authority.
	ocspOut, err := exec.Command("openssl", "ocsp", "-issuer", filepath.Join(dir, "intermediate.pem"), "-cert", filepath.Join(work, "dev1-renewed.pem"),
		"-url", fmt.Sprintf("http://127.0.0.1:%d/v1/ocsp", base+httpPortOffset), "-CAfile", filepath.Join(dir, "root.pem"), "-no_nonce", "-resp_text").CombinedOutput()
	if err != nil || !strings.Contains(string(ocspOut), "Response verify OK") || !strings.Contains(string(ocspOut), "OCSP Signing") ||
		!strings.Contains(string(ocspOut), "default OCSP responder") {
		t.Errorf("openssl ocsp against the dev responder: %v\n%s", err, ocspOut)
	}
	p.stop(t)
}

// Three dev nodes in one process, Raft and plain HTTP where -raft-addr and
// -http-addr say: they serve, reload on SIGHUP, take operator commands,
// and stop on Ctrl-C without an error line.
func TestDevThreeNodes(t *testing.T) {
	dir := t.TempDir()
	base := freeBase(t, 3)
	// Raft at other..other+2, HTTP at other+1000..: free, and clear of
	// the default ports.
	other := freeBase(t, 3)
	for other+raftPortOffset+2 >= base && other <= base+httpPortOffset+2 {
		other = freeBase(t, 3)
	}
	p := start(t, "dev", "-data-dir", dir, "-listen", fmt.Sprintf("127.0.0.1:%d", base), "-nodes", "3", "-log-level", "info",
		"-raft-addr", fmt.Sprintf("127.0.0.1:%d", other), "-http-addr", fmt.Sprintf("127.0.0.1:%d", other+raftPortOffset))
	testwait.For(t, 60*time.Second, "the dev banner", func() bool { return strings.Contains(p.out.String(), "Press Ctrl-C") })
	for i := range 3 {
		if want := fmt.Sprintf("CRL and OCSP on http://127.0.0.1:%d", other+raftPortOffset+i); !strings.Contains(p.out.String(), want) {
			t.Errorf("the banner lacks %q", want)
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/crl", other+raftPortOffset+i))
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("CRL on node %d's -http-addr port: %v %v", i+1, resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	// SIGHUP reloads (each node's API certificate) and stops nothing.
	for i := 1; i <= 3; i++ {
		p.cmd.Process.Signal(syscall.SIGHUP)
		testwait.For(t, 20*time.Second, "a reload of each node", func() bool { return strings.Count(p.out.String(), "msg=reloading") >= 3*i })
	}
	c := httpsClient(t, filepath.Join(dir, "root.pem"))
	var leaders []string
	for i := range 3 {
		h, ok := getHealth(c, fmt.Sprintf("127.0.0.1:%d", base+i))
		if !ok {
			t.Fatalf("node %d does not answer", i+1)
		}
		leaders = append(leaders, h.Leader)
	}
	if leaders[0] == "" || leaders[0] != leaders[1] || leaders[0] != leaders[2] {
		t.Fatalf("leaders %v", leaders)
	}
	for i := range 3 {
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("node%d", i+1), "state.db")); err != nil {
			t.Errorf("node %d has no data dir of its own: %v", i+1, err)
		}
	}
	admin, _ := os.ReadFile(filepath.Join(dir, "admin.token"))
	issue(t, c, strings.TrimSpace(string(admin)), fmt.Sprintf("127.0.0.1:%d", base+1), fmt.Sprintf("127.0.0.1:%d", base+2), "three.example")

	// The operator CLI, through a follower.
	operator := func(args ...string) string {
		t.Helper()
		args = append(args, "-addr", fmt.Sprintf("https://127.0.0.1:%d", base+2), "-ca-file", filepath.Join(dir, "root.pem"),
			"-admin-token-file", filepath.Join(dir, "admin.token"))
		out, err := exec.Command(binary, append([]string{"operator", "authority"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("operator authority %v: %v\n%s", args[:2], err, out)
		}
		return string(out)
	}
	out := operator("create", "-name", "ops", "-root-key", "softkey:"+filepath.Join(dir, "ops-root.key"),
		"-key", "softkey:"+filepath.Join(dir, "ops-int.key"), "-create-keys")
	if !strings.Contains(out, "ops") || !strings.Contains(out, "true") {
		t.Errorf("create output:\n%s", out)
	}
	operator("rotate", "-name", "ops", "-key", "softkey:"+filepath.Join(dir, "ops-int2.key"), "-create-key")
	peers, err := exec.Command(binary, "operator", "raft", "list-peers", "-addr", fmt.Sprintf("https://127.0.0.1:%d", base),
		"-ca-file", filepath.Join(dir, "root.pem"), "-admin-token-file", filepath.Join(dir, "admin.token")).CombinedOutput()
	for i := range 3 {
		if want := fmt.Sprintf("127.0.0.1:%d", other+i); err != nil || !strings.Contains(string(peers), want) {
			t.Errorf("Raft peers lack %s (-raft-addr): %v\n%s", want, err, peers)
		}
	}
	var list []struct {
		Name    string
		Issuers []struct{ Active bool }
	}
	if err := json.Unmarshal([]byte(operator("list", "-format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[2].Name != "ops" || len(list[2].Issuers) != 2 || list[2].Issuers[0].Active || !list[2].Issuers[1].Active {
		t.Errorf("authorities after create and rotate: %+v", list)
	}
	if out := operator("csr", "-key", "softkey:"+filepath.Join(dir, "ops-int3.key"), "-create-key", "-cn", "Next CA"); !strings.Contains(out, "BEGIN CERTIFICATE REQUEST") {
		t.Errorf("csr output:\n%s", out)
	}

	// Delegated OCSP responders: dev mode sets one up; an operator adds
	// one to another authority (each of its issuers certifies it) and
	// removes it.
	if out := operator("ocsp-responder", "-name", "default"); !strings.Contains(out, "ocsp-responder.key") {
		t.Errorf("dev responder:\n%s", out)
	}
	var resp struct {
		KeyURI       string `json:"key_uri"`
		TTL          string
		Certificates []struct{ Issuer string }
	}
	out = operator("ocsp-responder", "-name", "ops", "-key", "softkey:"+filepath.Join(dir, "ops-ocsp.key"), "-create-key", "-ttl", "24h", "-format", "json")
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Certificates) != 2 || resp.TTL != "24h0m0s" {
		t.Errorf("set responder: %v\n%s", err, out)
	}
	operator("ocsp-responder", "-name", "ops", "-remove")
	args := []string{"operator", "authority", "ocsp-responder", "-name", "ops", "-addr", fmt.Sprintf("https://127.0.0.1:%d", base),
		"-ca-file", filepath.Join(dir, "root.pem"), "-admin-token-file", filepath.Join(dir, "admin.token")}
	if out, err := exec.Command(binary, args...).CombinedOutput(); err == nil || !strings.Contains(string(out), "no delegated OCSP responder") {
		t.Errorf("responder after removal: %v\n%s", err, out)
	}

	// Ctrl-C: every node stops, quietly, and the process exits 0.
	p.cmd.Process.Signal(os.Interrupt)
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGINT: %v", err)
	}
	_, stopping, _ := strings.Cut(p.out.String(), "quorumca dev: stopping")
	for _, l := range strings.Split(stopping, "\n") {
		if strings.Contains(l, "level=ERROR") {
			t.Errorf("logged while stopping: %s", l)
		}
	}
}

// serverCluster is three `quorumca server` processes formed from HCL files.
type serverCluster struct {
	procs  []*proc
	base   int
	c      *http.Client
	admin  string
	root   string // the public root, PEM file
	leader int
}

func (sc *serverCluster) addr(i int) string { return fmt.Sprintf("127.0.0.1:%d", sc.base+i) }

// leaderOf is the leader among ids, if each of them answers and knows one.
func (sc *serverCluster) leaderOf(ids ...int) (int, bool) {
	lead := -1
	for _, i := range ids {
		h, ok := getHealth(sc.c, sc.addr(i))
		if !ok || h.Leader == "" {
			return -1, false
		}
		if h.RaftState == "Leader" {
			lead = i
		}
	}
	return lead, lead >= 0
}

// startServerCluster starts three server processes and waits until they
// have a leader and a follower takes writes.
func startServerCluster(t *testing.T) *serverCluster {
	t.Helper()
	dir := t.TempDir()
	pki := devPKI(t, filepath.Join(dir, "pki"))
	secretFile := filepath.Join(dir, "join.secret")
	os.WriteFile(secretFile, []byte("e2e-cluster-secret-0123456789\n"), 0o600)
	sc := &serverCluster{base: freeBase(t, 3), c: httpsClient(t, pki.root), root: pki.root}
	for i := range 3 {
		authority := fmt.Sprintf(`
authority "default" {
  root_file  = %q
  chain_file = %q
  key        = %q
}
`, pki.root, pki.chain, pki.key)
		path := writeServerConfig(t, dir, i, sc.base, pki, secretFile, "", authority)
		sc.procs = append(sc.procs, start(t, "server", "-config", path, "-log-level", "warn"))
	}
	testwait.For(t, 60*time.Second, "three nodes with a leader", func() bool {
		_, err := os.Stat(filepath.Join(dir, "admin.token"))
		var ok bool
		sc.leader, ok = sc.leaderOf(0, 1, 2)
		return ok && err == nil
	})
	adminB, _ := os.ReadFile(filepath.Join(dir, "admin.token"))
	sc.admin = strings.TrimSpace(string(adminB))
	testwait.For(t, 30*time.Second, "a write through a follower", func() bool {
		var tok struct{ Token string }
		return postJSON(t, sc.c, "https://"+sc.addr((sc.leader+1)%3)+"/v1/admin/tokens", sc.admin, map[string]any{"sans": []string{"probe.example"}}, &tok) == 201
	})
	return sc
}

// Three `quorumca server` processes form a cluster from HCL files, and
// survive kill -9 of the leader.
func TestServerProcessesSurviveLeaderKill(t *testing.T) {
	sc := startServerCluster(t)
	c, admin, leader := sc.c, sc.admin, sc.leader
	f1, f2 := (leader+1)%3, (leader+2)%3
	before := issue(t, c, admin, sc.addr(f1), sc.addr(f2), "before.example")

	sc.procs[leader].cmd.Process.Signal(syscall.SIGKILL)
	sc.procs[leader].cmd.Wait()
	testwait.For(t, 30*time.Second, "a new leader", func() bool { _, ok := sc.leaderOf(f1, f2); return ok })
	after := issue(t, c, admin, sc.addr(f1), sc.addr(f2), "after.example")

	for _, i := range []int{f1, f2} {
		for _, serial := range []string{before, after} {
			resp, err := c.Get("https://" + sc.addr(i) + "/v1/certs/" + serial)
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("node %d lacks %s: %v", i, serial, err)
			}
			if resp != nil {
				resp.Body.Close()
			}
		}
	}
	for _, i := range []int{f1, f2} {
		sc.procs[i].stop(t)
	}
}

// writeServerConfig writes node i's HCL config (node 0 bootstraps, the
// others join it) and returns its path. extra is added to every node's
// config, bootstrapExtra to node 0's.
func writeServerConfig(t *testing.T, dir string, i, base int, pki testPKI, secretFile, extra, bootstrapExtra string) string {
	t.Helper()
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", base+i) }
	ndir := filepath.Join(dir, fmt.Sprintf("ca-%d", i+1))
	cert, key := pki.tls(t, filepath.Join(dir, fmt.Sprintf("tls-%d", i+1)))
	role := fmt.Sprintf(`join = ["https://%s"]`, addr(0))
	if i == 0 {
		role = "bootstrap = true"
		extra += bootstrapExtra
	}
	cfg := fmt.Sprintf(`
node_name = "ca-%d"
data_dir  = %q
api {
  listen        = %q
  tls_cert_file = %q
  tls_key_file  = %q
}
raft { listen = "127.0.0.1:%d" }
cluster {
  %s
  join_secret_file = %q
  ca_key           = %q
}
bootstrap_admin_token_file = %q
allow_insecure_soft_signer = true
%s
`, i+1, ndir, addr(i), cert, key, base+i+raftPortOffset, role, secretFile, pki.clusterKey(t), filepath.Join(dir, "admin.token"), extra)
	path := filepath.Join(dir, fmt.Sprintf("ca-%d.hcl", i+1))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type testPKI struct {
	root, chain, key string
	pki              *node.DevPKI
}

func devPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	p, err := node.LoadOrCreateDevPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	return testPKI{root: p.RootFile, chain: p.ChainFile, key: p.KeyURI, pki: p}
}

// clusterKey is a soft cluster CA key shared by the test's processes.
func (p testPKI) clusterKey(t *testing.T) string {
	t.Helper()
	uri, err := p.pki.ClusterCAKey()
	if err != nil {
		t.Fatal(err)
	}
	return uri
}

func (p testPKI) tls(t *testing.T, dir string) (string, string) {
	t.Helper()
	cert, key, err := p.pki.NodeTLS(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

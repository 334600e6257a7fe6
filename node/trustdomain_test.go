package node

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/internal/testwait"
)

// impostor is what anyone who can enroll for a member's API address and
// answer for it on the network can stand up: an HTTPS server on 127.0.0.1
// with a certificate the public authority issued through an ordinary
// token. It relays every request to a real member (a man in the middle),
// or answers writes itself as if they had committed, and keeps every
// request it saw.
type impostor struct {
	t      *testing.T
	addr   string
	cert   tls.Certificate
	target atomic.Pointer[string] // https base of the member it relays to
	forge  bool                   // answer apply RPCs with a made-up index

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	path   string
	header http.Header
	body   []byte
}

// startImpostor enrolls a certificate for 127.0.0.1 through enrollVia, as a
// token holder would, and serves with it.
func (c *testCluster) startImpostor(enrollVia *testNode) *impostor {
	c.t.Helper()
	key := newKey(c.t)
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		c.t.Fatal(err)
	}
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	s := c.sign(enrollVia, c.mintToken(enrollVia, "1h", "127.0.0.1"), csr)
	leaf := parsePEMCert(c.t, s.Certificate)
	chain := [][]byte{leaf.Raw}
	for _, p := range s.Chain {
		chain = append(chain, parsePEMCert(c.t, p).Raw)
	}
	im := &impostor{t: c.t, cert: tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	im.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(im.serve),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{im.cert}, ClientAuth: tls.RequestClientCert}}
	go srv.ServeTLS(ln, "", "")
	c.t.Cleanup(func() { srv.Close() })
	return im
}

func (im *impostor) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	im.mu.Lock()
	im.seen = append(im.seen, seenRequest{path: r.URL.Path, header: r.Header.Clone(), body: body})
	im.mu.Unlock()
	if im.forge && strings.HasPrefix(r.URL.Path, "/v1/internal/apply") {
		// "Committed": a follower that believes it hands out a
		// certificate no quorum ever stored.
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"index": 999999, "results": [{"index": 999999}]}`)
		return
	}
	target := im.target.Load()
	if target == nil {
		http.Error(w, "no target", http.StatusBadGateway)
		return
	}
	resp, err := im.relay(r.Method, *target+r.URL.RequestURI(), r.Header, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// relay sends a request to a real member as the impostor: with whatever
// headers it chooses and its own (public) certificate.
func (im *impostor) relay(method, url string, header http.Header, body []byte) (*http.Response, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, Certificates: []tls.Certificate{im.cert}}}}
	return client.Do(req)
}

func (im *impostor) requests() []seenRequest {
	im.mu.Lock()
	defer im.mu.Unlock()
	return append([]seenRequest(nil), im.seen...)
}

// sawSecret reports whether secret appeared in any request it saw.
func (im *impostor) sawSecret(secret string) bool {
	for _, r := range im.requests() {
		var h bytes.Buffer
		r.header.Write(&h)
		if bytes.Contains(h.Bytes(), []byte(secret)) || bytes.Contains(r.body, []byte(secret)) {
			return true
		}
	}
	return false
}

// A joining node that cannot use the cluster CA key is pointed at an
// impostor with a certificate of the public authority for the member's
// address, relaying to the real member. It must send the impostor no
// secret, refuse what comes back, and nothing the impostor saw may get it
// a node certificate of its own.
func TestJoiningNodeRefusesAnImpostorMember(t *testing.T) {
	c := newTestCluster(t, 1)
	leader := c.Leader()
	im := c.startImpostor(leader)
	target := "https://" + leader.node.APIAddr()
	im.target.Store(&target)

	joiner := c.addNodeWith(func(cfg *Config) {
		cfg.ClusterCAKey = "softkey:/nonexistent/cluster-ca.key"
		cfg.Join = []string{"https://" + im.addr}
	})
	// Judge once the joiner has asked for a certificate and either took one
	// or has asked again (it refused what it got).
	testwait.For(t, 20*time.Second, "the joining node to ask the impostor for a node certificate", func() bool {
		n := 0
		for _, r := range im.requests() {
			if r.path == "/v1/internal/node-cert" {
				n++
			}
		}
		return n >= 2 || n == 1 && joiner.node.Cluster().NodeCert() != nil
	})
	if im.sawSecret(c.secret) {
		t.Error("the joining node sent the join secret to an impostor")
	}
	if joiner.node.Cluster().NodeCert() != nil {
		t.Error("the joining node accepted a node certificate through an impostor")
	}

	// Whatever the impostor saw, replayed with a key of its own or as it
	// was, gets it no node certificate from the real member.
	key := newKey(t)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "impostor"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range im.requests() {
		if !strings.HasPrefix(r.path, "/v1/internal/node-cert") {
			continue
		}
		bodies := [][]byte{r.body}
		var req map[string]any
		if json.Unmarshal(r.body, &req) == nil {
			req["id"], req["csr"] = "impostor", csr
			own, _ := json.Marshal(req)
			bodies = append(bodies, own)
		}
		for _, body := range bodies {
			resp, err := im.relay("POST", target+r.path, r.header, body)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(out, []byte(`"cert"`)) {
				t.Errorf("a replay of %s (%d bytes) got a node certificate: %s", r.path, len(body), out)
			}
		}
	}
}

// A follower forwards writes only to a peer that shows a node
// certificate of the cluster CA: an impostor answering for the leader's
// advertised API address with a certificate of the public authority sees
// no write, and cannot make the follower hand out a certificate no quorum
// stored.
func TestForwardingRefusesAnImpostorLeader(t *testing.T) {
	c := newTestCluster(t, 1)
	leader := c.nodes[0]
	im := c.startImpostor(leader)
	im.forge = true
	// The leader's advertised API address now leads to the impostor.
	c.Stop(leader)
	leader.cfg.APIAdvertise = im.addr
	c.Restart(leader)
	follower := c.AddNode(false)
	testwait.For(t, 20*time.Second, "the follower to learn the leader's advertised address", func() bool {
		n, err := follower.node.FSM().Node(leader.cfg.NodeName)
		return err == nil && n.APIAddr == im.addr && c.Leader() == leader
	})

	k := newKey(t)
	tok := c.mintToken(leader, "1h", "forwarded.example")
	r := c.do(follower, "POST", "/v1/sign", map[string]string{"csr": string(newCSR(t, k, "forwarded.example")), "token": tok}, "")
	if r.status == http.StatusCreated {
		// Only if the follower had become the leader (an election on a
		// loaded machine) and so both nodes store it: a quorum's record,
		// not an impostor's word (which no node would ever store).
		var s signed
		r.decode(t, &s)
		testwait.For(t, 10*time.Second, "a certificate handed out to be stored by the quorum", func() bool {
			for _, tn := range []*testNode{leader, follower} {
				if _, err := tn.node.FSM().Cert(s.Serial); err != nil {
					return false
				}
			}
			return true
		})
		t.Logf("issued after an election, stored by both nodes: %s", s.Serial)
	}
	for _, rq := range im.requests() {
		t.Errorf("the impostor received %s (%d bytes)", rq.path, len(rq.body))
	}
}

// internalPaths are every internal RPC a node serves.
var internalPaths = []string{
	"/v1/internal/apply", "/v1/internal/apply-batch", "/v1/internal/format", "/v1/internal/index",
	"/v1/internal/wait", "/v1/internal/remove", "/v1/internal/transfer", "/v1/internal/restore",
	"/v1/internal/join", "/v1/internal/node-cert",
}

// A certificate of the public authority, even one for a member's own
// address, is no node certificate: every internal RPC refuses it, asked
// for the node server name or not, and so does the Raft port.
func TestPublicCertificatesAreNotNodes(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.Leader()
	im := c.startImpostor(leader) // a certificate for 127.0.0.1 from the public authority
	h := &holder{key: im.cert.PrivateKey.(crypto.Signer), cert: im.cert.Leaf}
	tokenOnly := c.enrollHolder(leader, "device.example")

	for _, sni := range []string{"", "node.quorumca.internal"} {
		for _, holder := range []*holder{h, tokenOnly} {
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
				InsecureSkipVerify: true, ServerName: sni,
				Certificates: []tls.Certificate{{Certificate: [][]byte{holder.cert.Raw}, PrivateKey: holder.key}}}}}
			for _, tn := range c.nodes {
				for _, path := range internalPaths {
					resp, err := client.Post("https://"+tn.node.APIAddr()+path, "application/json", strings.NewReader(`{"id":"x","raft_addr":"127.0.0.1:1"}`))
					if err != nil {
						t.Fatalf("%s %s: %v", tn.cfg.NodeName, path, err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusBadRequest {
						t.Errorf("%s %s with %s (sni %q): %d %s", tn.cfg.NodeName, path, holder.cert.Subject.CommonName, sni, resp.StatusCode, body)
					}
				}
				client.CloseIdleConnections()
			}
			// Raft: the handshake fails, nothing reaches Raft.
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", leader.node.Cluster().RaftAddr(),
				&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{{Certificate: [][]byte{holder.cert.Raw}, PrivateKey: holder.key}}})
			if err == nil {
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				conn.Write([]byte{0})
				_, err = conn.Read(make([]byte, 1))
				conn.Close()
			}
			if err == nil {
				t.Errorf("Raft answered a peer with a certificate of the public authority (%s)", holder.cert.Subject.CommonName)
			}
		}
	}
}

// Wrong proofs of the join secret are refused, logged to the audit file,
// and limited per source address: a handful of tries, then 429.
func TestFailedJoinAttemptsAreLimitedAndAudited(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) { c.auditFiles = true })
	leader := c.Leader()
	key := newKey(t)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "guesser"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	var refused, limited int
	for i := range 12 {
		r := c.do(leader, "POST", "/v1/internal/node-cert/challenge", []byte("{}"), "")
		var ch struct{ Nonce []byte }
		if r.status == http.StatusOK {
			r.decode(t, &ch)
			body, _ := json.Marshal(map[string]any{"id": "guesser", "csr": csr, "nonce": ch.Nonce,
				"proof": bytes.Repeat([]byte{byte(i)}, 32)})
			r = c.do(leader, "POST", "/v1/internal/node-cert", body, c.secret) // a bearer secret counts for nothing
		}
		switch {
		case r.status == http.StatusForbidden && r.errorCode() == "join_refused":
			refused++
		case r.status == http.StatusTooManyRequests && r.header.Get("Retry-After") != "":
			limited++
		default:
			t.Fatalf("guess %d: %d %s", i, r.status, r.body)
		}
	}
	if refused == 0 || refused > 6 || limited == 0 {
		t.Errorf("12 wrong proofs: %d refused, %d limited; want a handful refused, then 429", refused, limited)
	}
	testwait.For(t, 10*time.Second, "the refusals in the audit file", func() bool {
		b, _ := os.ReadFile(leader.cfg.AuditFile)
		return bytes.Count(b, []byte("join_refused")) >= refused
	})
}

// With cluster.ca_fingerprint, a joining node sends a proof only to a
// member whose TLS certificate chains to the pinned cluster CA: an
// impostor gets challenge requests and nothing else; the real member, a
// proof and a node certificate.
func TestPinnedClusterCA(t *testing.T) {
	c := newTestCluster(t, 1)
	leader := c.Leader()
	pin := leader.node.Cluster().Status().ClusterCA
	if len(pin) != 64 {
		t.Fatalf("health shows cluster CA fingerprint %q", pin)
	}
	im := c.startImpostor(leader)
	target := "https://" + leader.node.APIAddr()
	im.target.Store(&target)
	keyless := func(cfg *Config) {
		cfg.ClusterCAKey = "softkey:/nonexistent/cluster-ca.key"
		cfg.CAFingerprint = "sha256:" + pin
	}
	fooled := c.addNodeWith(func(cfg *Config) { keyless(cfg); cfg.Join = []string{"https://" + im.addr} })
	testwait.For(t, 20*time.Second, "the pinned node to try the impostor twice", func() bool { return len(im.requests()) >= 2 })
	for _, r := range im.requests() {
		if r.path != "/v1/internal/node-cert/challenge" {
			t.Errorf("a pinned node sent %s to an impostor", r.path)
		}
	}
	if fooled.node.Cluster().NodeCert() != nil {
		t.Error("a pinned node took a node certificate through an impostor")
	}

	good := c.addNodeWith(keyless)
	testwait.For(t, 20*time.Second, "the pinned node to join the real member", func() bool {
		servers, _ := leader.node.Cluster().Servers()
		return good.node.Cluster().NodeCert() != nil && len(servers) == 2
	})
	wrong := strings.Repeat("0", 64)
	if _, err := (&Config{CAFingerprint: "sha256:zz"}).caFingerprint(); err == nil || !strings.Contains(err.Error(), "ca_fingerprint") {
		t.Errorf("a malformed fingerprint: %v", err)
	}
	lost := c.addNodeWith(func(cfg *Config) { keyless(cfg); cfg.CAFingerprint = wrong })
	// Judged once another node that joins after it is in.
	late := c.addNodeWith(keyless)
	testwait.For(t, 20*time.Second, "a later node to join", func() bool { return late.node.Cluster().NodeCert() != nil })
	if lost.node.Cluster().NodeCert() != nil {
		t.Error("a node pinned to another cluster CA took a node certificate")
	}
}

package cluster

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumca/quorumca/internal/backoff"
	"github.com/quorumca/quorumca/signer"
)

// Node-to-node traffic (Raft, forwarding, joins, every internal RPC) runs
// over mutual TLS with node certificates of the cluster CA, verified in
// both directions against the cluster CA alone: node identity is its own
// trust domain, apart from every public authority. Trust is anchored in the
// cluster CA key, which every node names by the same URI: each node builds
// a local self-signed CA certificate from it (same subject, same key), so a
// certificate any node issued verifies on every node, before any replicated
// state exists. A node that can use the key issues its own certificate; one
// that cannot proves the join secret to a member without sending it
// (nodecert.go). The internal RPC shares the API port: a node asks for the
// server name nodeTLSName, and the API listener answers such a handshake
// with its node certificate instead of its API certificate (ServerTLS).

const (
	defaultNodeCertTTL = 7 * 24 * time.Hour
	nodeTLSName        = "node.quorumca.internal" // every node certificate names it
	clusterCAName      = "quorumca cluster CA"
)

// ErrNoNodeCert: this node has no node certificate yet.
var ErrNoNodeCert = errors.New("cluster: no node certificate yet")

type nodeTLS struct {
	id  string
	ttl time.Duration

	ready     chan struct{} // closed once the node has a certificate
	readyOnce sync.Once

	mu   sync.RWMutex
	key  signer.Key        // the cluster CA key, or nil if this node cannot reach it
	ca   *x509.Certificate // local anchor
	pool *x509.CertPool
	cert *tls.Certificate

	// verified remembers certificates that chained to pool, until they
	// expire: every forwarded write shows its node certificate, and a chain
	// check costs a signature verification.
	verified map[[sha256.Size]byte]time.Time

	// removedAt, if set, says when the node with an id was removed from
	// the cluster (zero: never): its certificates issued before then are
	// void. A local read of the replicated node table.
	removedAt func(id string) time.Time
}

// nodeCertBackdate is how far before its issue a node certificate's
// NotBefore lies (clocks differ a little between nodes).
const nodeCertBackdate = time.Minute

// notRemoved refuses a node certificate issued before its node was removed
// from the cluster: removing a node takes away the credentials it had, so
// it cannot renew them, rejoin or write with them, even with a secret it
// learned before (it needs a certificate issued since, from the cluster CA
// key or a proof of the current join secret).
func (n *nodeTLS) notRemoved(leaf *x509.Certificate) error {
	if n.removedAt == nil {
		return nil
	}
	at := n.removedAt(leaf.Subject.CommonName)
	if !at.IsZero() && !leaf.NotBefore.Add(nodeCertBackdate).After(at) {
		return fmt.Errorf("cluster: node %q was removed from the cluster at %s; its certificate predates that",
			leaf.Subject.CommonName, at.UTC().Format(time.RFC3339))
	}
	return nil
}

// maxVerified bounds the verified-certificate cache; a cluster has a few
// nodes, each with a current and perhaps a previous certificate.
const maxVerified = 256

// caCert builds the local self-signed anchor for the cluster CA key.
func caCert(ctx context.Context, key signer.Key) (*x509.Certificate, error) {
	pub := key.Public()
	ski := subjectKeyID(pub)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: clusterCAName},
		NotBefore: time.Unix(0, 0), NotAfter: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, SubjectKeyId: ski,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer.CryptoSigner(ctx, key))
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func subjectKeyID(pub crypto.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	h := sha256.Sum256(der)
	return h[:20]
}

// setAnchor installs the cluster CA anchor.
func (n *nodeTLS) setAnchor(ca *x509.Certificate) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.setAnchorLocked(ca)
}

func (n *nodeTLS) setAnchorLocked(ca *x509.Certificate) {
	n.ca = ca
	n.pool = x509.NewCertPool()
	n.pool.AddCert(ca)
	n.verified = nil
}

// adoptKey makes key the cluster CA key this node signs with, and its
// anchor the local one unless a member gave one already.
func (n *nodeTLS) adoptKey(ctx context.Context, key signer.Key) error {
	ca, err := caCert(ctx, key)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.key = key
	if n.ca == nil {
		n.setAnchorLocked(ca)
	}
	return nil
}

func (n *nodeTLS) hasAnchor() bool { return n.anchor() != nil }

// anchor is the cluster CA certificate this node verifies against, or nil.
func (n *nodeTLS) anchor() *x509.Certificate {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.ca
}

// issue signs a node certificate for pub with the cluster CA key.
func (n *nodeTLS) issue(ctx context.Context, id string, pub crypto.PublicKey) ([]byte, error) {
	n.mu.RLock()
	ca, key := n.ca, n.key
	n.mu.RUnlock()
	if key == nil {
		return nil, errors.New("cluster: this node cannot use the cluster CA key")
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	// Certificates keep whole seconds: one issued in the second the node
	// was removed in must still count as issued after the removal.
	notBefore := now.Add(-nodeCertBackdate).Truncate(time.Second)
	if n.removedAt != nil {
		if at := n.removedAt(id); !notBefore.Add(nodeCertBackdate).After(at) {
			notBefore = at.Add(-nodeCertBackdate).Truncate(time.Second).Add(time.Second)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: id},
		DNSNames:  []string{nodeTLSName, id + "." + nodeTLSName},
		NotBefore: notBefore, NotAfter: now.Add(n.ttl),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		AuthorityKeyId: ca.SubjectKeyId,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca, pub, signer.CryptoSigner(ctx, key))
}

// install makes a certificate (and its key) this node's.
func (n *nodeTLS) install(der []byte, key crypto.Signer) error {
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	if err := n.verify(leaf); err != nil {
		return err
	}
	n.mu.Lock()
	n.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	n.mu.Unlock()
	n.readyOnce.Do(func() { close(n.ready) })
	return nil
}

// verify checks a peer's node certificate against the cluster CA.
func (n *nodeTLS) verify(leaf *x509.Certificate) error {
	h := sha256.Sum256(leaf.Raw)
	now := time.Now()
	n.mu.RLock()
	pool := n.pool
	until, ok := n.verified[h]
	n.mu.RUnlock()
	if pool == nil {
		return ErrNoNodeCert
	}
	if ok && now.Before(until) {
		return n.notRemoved(leaf)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: nodeTLSName, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return err
	}
	if err := n.notRemoved(leaf); err != nil {
		return err
	}
	n.mu.Lock()
	if n.pool == pool { // not re-anchored meanwhile
		if n.verified == nil || len(n.verified) >= maxVerified {
			n.verified = make(map[[sha256.Size]byte]time.Time)
		}
		n.verified[h] = leaf.NotAfter
	}
	n.mu.Unlock()
	return nil
}

func (n *nodeTLS) current() (*tls.Certificate, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.cert == nil {
		return nil, ErrNoNodeCert
	}
	return n.cert, nil
}

// needsRenewal reports whether the certificate is missing or two thirds
// through its life.
func (n *nodeTLS) needsRenewal() bool {
	c, err := n.current()
	if err != nil {
		return true
	}
	life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
	return time.Now().After(c.Leaf.NotBefore.Add(life * 2 / 3))
}

// verifyRaw is a VerifyPeerCertificate: the peer must show a node certificate.
func (n *nodeTLS) verifyRaw(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("cluster: peer has no node certificate")
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return err
	}
	return n.verify(leaf)
}

// serverConfig requires and verifies a node certificate from the peer.
func (n *nodeTLS) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		ClientAuth:            tls.RequireAnyClientCert,
		GetCertificate:        func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return n.current() },
		VerifyPeerCertificate: n.verifyRaw,
	}
}

// clientConfig presents this node's certificate and checks the peer's.
func (n *nodeTLS) clientConfig() *tls.Config { return n.clientConfigWith(nil) }

// clientConfigWith presents cert, or this node's current certificate.
func (n *nodeTLS) clientConfigWith(cert *tls.Certificate) *tls.Config {
	cfg := n.rpcClientConfig()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if cert != nil {
			return cert, nil
		}
		return n.current()
	}
	return cfg
}

// rpcClientConfig verifies that the server shows a node certificate of the
// cluster CA, and nothing else: a certificate of a public authority for the
// peer's address is refused before a byte of the request is sent.
func (n *nodeTLS) rpcClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		ServerName:            nodeTLSName, // asks a member's API listener for its node certificate
		InsecureSkipVerify:    true,        // verified by VerifyPeerCertificate, against the cluster CA
		VerifyPeerCertificate: n.verifyRaw,
	}
}

// ServerTLS is the API listener's TLS configuration: api for clients, and
// for a handshake that asks for the server name nodeTLSName (another node),
// this node's certificate, TLS 1.3, and a request for the peer's node
// certificate. The internal RPC handlers check that certificate on every
// request; a joining node without one reaches only the node-certificate
// exchange. This node's API certificate is never shown to a peer, and a
// client never gets a node certificate unless it asks for one.
func (c *Cluster) ServerTLS(api *tls.Config) *tls.Config {
	node := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.tls.current() },
		NextProtos:     []string{"h2", "http/1.1"},
	}
	out := api.Clone()
	out.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if hello.ServerName == nodeTLSName {
			return node, nil
		}
		if api.GetConfigForClient != nil {
			return api.GetConfigForClient(hello)
		}
		return nil, nil
	}
	return out
}

// tlsStream is Raft's transport layer over mutual TLS.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	tls       *nodeTLS

	once, closeOnce sync.Once
	conns           chan net.Conn
	done            chan struct{}
}

func newTLSStream(ln net.Listener, advertise net.Addr, t *nodeTLS) *tlsStream {
	return &tlsStream{Listener: ln, advertise: advertise, tls: t, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (s *tlsStream) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.Listener.Addr()
}

func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return tls.DialWithDialer(d, "tcp", string(address), s.tls.clientConfig())
}

// Accept hands Raft only connections whose TLS handshake, with a node
// certificate, has completed: a peer without one is turned away before
// Raft reads a byte. Handshakes run side by side, so a slow or silent peer
// holds up no one.
func (s *tlsStream) Accept() (net.Conn, error) {
	s.once.Do(func() { go s.acceptLoop() })
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *tlsStream) acceptLoop() {
	for {
		conn, err := s.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: wait a little, as
			// net/http does.
			select {
			case <-s.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		go s.handshake(conn)
	}
}

func (s *tlsStream) handshake(conn net.Conn) {
	tc := tls.Server(conn, s.tls.serverConfig())
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	pc := &peerConn{Conn: tc, leaf: tc.ConnectionState().PeerCertificates[0], tls: s.tls}
	pc.checked.Store(time.Now().UnixNano())
	select {
	case s.conns <- pc:
	case <-s.done:
		tc.Close()
	}
}

// peerConn is a Raft connection from another node. The handshake checked
// its node certificate; a connection lives on, so the certificate is
// checked again, at most once a second, as data arrives: a certificate that
// expires, or whose node an operator removes, stops being heard within a
// second instead of when the connection happens to break.
type peerConn struct {
	net.Conn
	leaf    *x509.Certificate
	tls     *nodeTLS
	checked atomic.Int64 // unix nanoseconds of the last check
}

const peerRecheck = time.Second

func (c *peerConn) Read(b []byte) (int, error) {
	now := time.Now()
	if last := c.checked.Load(); now.UnixNano()-last > int64(peerRecheck) && c.checked.CompareAndSwap(last, now.UnixNano()) {
		err := c.tls.notRemoved(c.leaf)
		if err == nil && now.After(c.leaf.NotAfter) {
			err = errors.New("cluster: the peer's node certificate expired")
		}
		if err != nil {
			c.Conn.Close()
			return 0, err
		}
	}
	return c.Conn.Read(b)
}

func (s *tlsStream) Close() error {
	err := s.Listener.Close()
	s.closeOnce.Do(func() { close(s.done) })
	return err
}

// noPipeline turns off Raft's pipelined replication: hashicorp/raft can
// deadlock a replication goroutine when a follower rejects an entry while
// a pipelined send is in flight (the follower then gets heartbeats but no
// more entries, and Shutdown hangs). Plain AppendEntries costs a round
// trip per batch, which our batched applies absorb.
type noPipeline struct{ *raft.NetworkTransport }

func (noPipeline) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// newNodeKey makes the key of a node certificate; it never leaves the node.
func newNodeKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

// retryCAKey tries once more to open the cluster CA key.
func (c *Cluster) retryCAKey(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	k, err := c.cfg.OpenCAKey(ctx)
	if err == nil {
		err = c.tls.adoptKey(ctx, k)
	}
	if err == nil {
		c.log.Info("cluster CA key in reach now")
	}
}

func (n *nodeTLS) signingKey() signer.Key {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.key
}

// installNodeCert makes der this node's certificate and moves internal RPCs
// onto connections that present it.
func (c *Cluster) installNodeCert(der []byte, key crypto.Signer) error {
	if err := c.tls.install(der, key); err != nil {
		return err
	}
	cert, _ := c.tls.current()
	c.rpc.use(cert)
	return nil
}

// rpcTransport carries internal RPCs. Each node certificate gets its own
// http.Transport, so no pooled connection made with an older certificate,
// or none, is reused once a new one is in place.
type rpcTransport struct {
	base *tls.Config
	cur  atomic.Pointer[http.Transport]
}

// A member that was killed, is paused or is cut off answers nothing, not
// even a reset. Without a bound, a write forwarded to a leader that just
// died waits on its connection until the client gives up, long after a new
// leader was elected; with these, the connection is found dead in about
// two seconds and the write is retried with the new leader.
const (
	rpcDialTimeout      = 2 * time.Second
	rpcHandshakeTimeout = 2 * time.Second
	rpcPingAfter        = time.Second // of silence on a connection
	rpcPingTimeout      = time.Second
)

func newRPCHTTPTransport(base *tls.Config, cert *tls.Certificate) *http.Transport {
	cfg := base.Clone()
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Transport{
		TLSClientConfig:     cfg,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: rpcDialTimeout}).DialContext,
		TLSHandshakeTimeout: rpcHandshakeTimeout,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: rpcPingAfter, PingTimeout: rpcPingTimeout},
	}
}

// use switches to connections presenting cert (nil: none). The old
// transport's connections close as they fall idle.
func (t *rpcTransport) use(cert *tls.Certificate) {
	if old := t.cur.Swap(newRPCHTTPTransport(t.base, cert)); old != nil {
		old.CloseIdleConnections()
		time.AfterFunc(2*time.Minute, old.CloseIdleConnections) // after in-flight calls return
	}
}

func (t *rpcTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.cur.Load().RoundTrip(r)
}

func (t *rpcTransport) CloseIdleConnections() { t.cur.Load().CloseIdleConnections() }

// memberAPIs are the https bases of members this node may ask: the join
// list, then members known from the node table and gossip.
func (c *Cluster) memberAPIs() []string {
	out := append([]string{}, c.cfg.Join...)
	if c.gossip != nil {
		for _, m := range c.gossip.snapshot() {
			if m.alive && m.ID != c.cfg.NodeID && m.API != "" {
				out = append(out, "https://"+m.API)
			}
		}
	}
	return out
}

// NodeCert is this node's current certificate, or nil.
func (c *Cluster) NodeCert() *x509.Certificate {
	cert, err := c.tls.current()
	if err != nil {
		return nil
	}
	return cert.Leaf
}

// nodeCertLoop keeps this node's certificate valid.
func (c *Cluster) nodeCertLoop() {
	defer c.wg.Done()
	b := backoff.New(200*time.Millisecond, 10*time.Second)
	for {
		wait := min(time.Minute, c.tls.ttl/6)
		if c.tls.needsRenewal() {
			if err := c.ensureNodeCert(c.ctx); err != nil {
				if errors.Is(err, ErrForbidden) {
					c.log.Error("no node certificate: the cluster refused the join secret; will retry", "err", err)
				} else {
					c.log.Warn("no node certificate yet: will retry", "err", err)
				}
				if !b.Wait(c.ctx) {
					return
				}
				continue
			}
			b.Reset()
			c.log.Info("node certificate in place")
		}
		if !backoff.Sleep(c.ctx, wait) {
			return
		}
	}
}

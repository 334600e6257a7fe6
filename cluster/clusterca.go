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
	"sync"
	"time"

	"github.com/quorumca/quorumca/internal/backoff"
	"github.com/quorumca/quorumca/signer"
)

// nodeTLS is the cluster CA as this node holds it: the local anchor, the CA
// key if in reach, the node certificates it issues and verifies, and this
// node's own (the trust model: nodetls.go).
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

package cluster

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quorumca/quorumca/internal/keyrate"
)

// A node certificate from a member. A node that can use the cluster CA key
// signs its own (ensureNodeCert). One that cannot asks a member, and proves
// the join secret without ever sending it:
//
//  1. POST node-cert/challenge: the member answers a fresh nonce (one use,
//     one minute) and its anchor.
//  2. POST node-cert with the node's id, a CSR for a key it keeps, the
//     nonce, and proof = HMAC-SHA256(secret; label, nonce, id, CSR).
//  3. The member checks the proof, signs the CSR with the cluster CA key,
//     and answers the certificate, its anchor, and a proof of its own over
//     the request's proof, the certificate and the anchor.
//
// The node takes the certificate only if the member's proof holds, the
// certificate is for its own key and chains to the anchor, and the
// member's TLS certificate is a node certificate under that anchor. A man
// in the middle learns a proof bound to one nonce and one CSR: replayed,
// the nonce is spent; with its own CSR, the proof does not hold; relayed,
// it certifies the joining node's key, which it does not hold, and the
// joining node refuses it anyway (the middle's TLS certificate is not a
// node's). With cluster.ca_fingerprint set, the member's TLS certificate
// must chain to that key before any proof is sent. Failed proofs are
// limited per source address, logged and reported to Config.Refused. A node
// whose certificate is still valid renews by showing it, without the
// secret.

const (
	pathNodeCertChallenge = pathNodeCert + "/challenge"

	challengeTTL    = time.Minute
	maxChallenges   = 4096 // outstanding at once, per member
	maxNodeCertBody = 64 << 10
	maxNodeID       = 128
)

type challengeReply struct {
	Nonce []byte `json:"nonce"`
	CA    []byte `json:"ca"` // the member's anchor, unproven: for the fingerprint check
}

type nodeCertRequest struct {
	ID    string `json:"id"`
	CSR   []byte `json:"csr"`             // DER
	Nonce []byte `json:"nonce,omitempty"` // absent when renewing with a node certificate
	Proof []byte `json:"proof,omitempty"`
}

type nodeCertReply struct {
	Cert  []byte `json:"cert"`            // DER
	CA    []byte `json:"ca"`              // DER of the member's local anchor: the cluster CA key
	Proof []byte `json:"proof,omitempty"` // the member's proof, for a request that proved the secret
}

// joinProof is a joining node's proof of the secret for one nonce and CSR.
func joinProof(secret string, nonce []byte, id string, csr []byte) []byte {
	return secretMAC(secret, "quorumca node-cert request v1", nonce, []byte(id), csr)
}

// memberProof is a member's proof of the secret over a request's proof and
// its answer.
func memberProof(secret string, request, cert, ca []byte) []byte {
	return secretMAC(secret, "quorumca node-cert reply v1", request, cert, ca)
}

func secretMAC(secret, label string, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(label))
	for _, p := range parts {
		m.Write(binary.BigEndian.AppendUint64(nil, uint64(len(p))))
		m.Write(p)
	}
	return m.Sum(nil)
}

// Fingerprint is the SHA-256 of a certificate's public key: what
// cluster.ca_fingerprint pins. Every node's anchor for one cluster CA key
// has the same fingerprint.
func Fingerprint(c *x509.Certificate) []byte {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return h[:]
}

// ensureNodeCert gets this node a certificate: by signing one itself when
// it can use the cluster CA key, else from a member.
func (c *Cluster) ensureNodeCert(ctx context.Context) error {
	key, err := newNodeKey()
	if err != nil {
		return err
	}
	if c.tls.signingKey() == nil && c.cfg.OpenCAKey != nil {
		c.retryCAKey(ctx)
	}
	if c.tls.signingKey() != nil {
		der, err := c.tls.issue(ctx, c.cfg.NodeID, key.Public())
		if err != nil {
			return err
		}
		return c.installNodeCert(der, key)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: c.cfg.NodeID}}, key)
	if err != nil {
		return err
	}
	var lastErr error = errors.New("no member to ask for a node certificate")
	for _, base := range c.memberAPIs() {
		der, ca, err := c.askMember(ctx, strings.TrimSuffix(base, "/"), csr, key)
		if err != nil {
			lastErr = fmt.Errorf("%s: %w", base, err)
			continue
		}
		if !c.tls.hasAnchor() {
			c.tls.setAnchor(ca)
		}
		return c.installNodeCert(der, key)
	}
	return lastErr
}

// askMember asks one member for a node certificate: by showing this node's
// current one while it is valid, else by proving the join secret.
func (c *Cluster) askMember(ctx context.Context, base string, csr []byte, key crypto.Signer) ([]byte, *x509.Certificate, error) {
	if cur, err := c.tls.current(); err == nil && time.Now().Before(cur.Leaf.NotAfter) && c.tls.hasAnchor() {
		der, ca, err := c.exchangeNodeCert(ctx, base, cur, false, csr, key)
		if !errors.Is(err, ErrForbidden) {
			return der, ca, err
		}
	}
	return c.exchangeNodeCert(ctx, base, nil, true, csr, key)
}

// exchangeNodeCert runs one node-certificate request against base, on a
// connection pool of its own (one made without a node certificate must not
// serve other RPCs), and checks everything in the answer.
func (c *Cluster) exchangeNodeCert(ctx context.Context, base string, cur *tls.Certificate, prove bool, csr []byte, key crypto.Signer) ([]byte, *x509.Certificate, error) {
	cfg := c.tls.rpcClientConfig() // verified against the anchor, once this node has one
	if !c.tls.hasAnchor() {
		// Nothing to verify against yet: the member's certificate is
		// checked below, against a pinned or proven anchor.
		cfg.VerifyPeerCertificate = nil
	}
	t := newRPCHTTPTransport(cfg, cur)
	defer t.CloseIdleConnections()
	client := &http.Client{Transport: t}

	req := nodeCertRequest{ID: c.cfg.NodeID, CSR: csr}
	if prove {
		if c.cfg.Secret == "" {
			return nil, nil, errors.New("this node has no join secret")
		}
		var ch challengeReply
		state, err := c.postNodeCert(ctx, client, base+pathNodeCertChallenge, struct{}{}, &ch)
		if err != nil {
			return nil, nil, err
		}
		if len(c.cfg.CAFingerprint) > 0 {
			// The member shows it holds a node certificate of the
			// pinned cluster CA before it sees any proof.
			ca, err := x509.ParseCertificate(ch.CA)
			if err != nil || !bytes.Equal(Fingerprint(ca), c.cfg.CAFingerprint) {
				return nil, nil, errors.New("the member's cluster CA does not match cluster.ca_fingerprint")
			}
			if err := verifyPeerNode(state, ca); err != nil {
				return nil, nil, err
			}
		}
		req.Nonce, req.Proof = ch.Nonce, joinProof(c.cfg.Secret, ch.Nonce, req.ID, csr)
	}
	var out nodeCertReply
	state, err := c.postNodeCert(ctx, client, base+pathNodeCert, req, &out)
	if err != nil {
		return nil, nil, err
	}
	if prove && !hmac.Equal(out.Proof, memberProof(c.cfg.Secret, req.Proof, out.Cert, out.CA)) {
		return nil, nil, errors.New("the member did not prove the join secret")
	}
	ca, err := x509.ParseCertificate(out.CA)
	if err != nil || !ca.IsCA {
		return nil, nil, fmt.Errorf("the member sent no usable cluster CA: %v", err)
	}
	if len(c.cfg.CAFingerprint) > 0 && !bytes.Equal(Fingerprint(ca), c.cfg.CAFingerprint) {
		return nil, nil, errors.New("the member's cluster CA does not match cluster.ca_fingerprint")
	}
	if anchor := c.tls.anchor(); anchor != nil && !bytes.Equal(Fingerprint(ca), Fingerprint(anchor)) {
		return nil, nil, errors.New("the member's cluster CA is not this node's")
	}
	leaf, err := x509.ParseCertificate(out.Cert)
	if err != nil {
		return nil, nil, fmt.Errorf("the member sent no usable certificate: %v", err)
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, nil, errors.New("the member certified another key")
	}
	if err := verifyNode(leaf, ca); err != nil {
		return nil, nil, fmt.Errorf("the member's certificate does not chain to its cluster CA: %v", err)
	}
	if err := verifyPeerNode(state, ca); err != nil {
		return nil, nil, err
	}
	return out.Cert, ca, nil
}

// postNodeCert posts body as JSON and decodes the reply into out; it
// returns the connection's TLS state, whose peer the caller checks.
func (c *Cluster) postNodeCert(ctx context.Context, client *http.Client, url string, body, out any) (*tls.ConnectionState, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := c.rpcResult(resp, out); err != nil {
		return nil, err
	}
	if resp.TLS == nil {
		return nil, errors.New("not a TLS connection")
	}
	return resp.TLS, nil
}

// verifyNode checks that leaf is a node certificate under ca.
func verifyNode(leaf, ca *x509.Certificate) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: nodeTLSName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}})
	return err
}

// verifyPeerNode checks that the TLS peer showed a node certificate under ca.
func verifyPeerNode(state *tls.ConnectionState, ca *x509.Certificate) error {
	if len(state.PeerCertificates) == 0 {
		return errors.New("the member showed no certificate")
	}
	if err := verifyNode(state.PeerCertificates[0], ca); err != nil {
		return fmt.Errorf("the member's TLS certificate is not a node certificate of the cluster CA: %v", err)
	}
	return nil
}

// joinGuard holds a member's outstanding challenges and counts failed
// proofs per source address. A source past its failures gets 429 for
// everything but a renewal with a node certificate.
type joinGuard struct {
	challenges *keyrate.Limiter // challenges asked, per source
	failures   *keyrate.Limiter // failed proofs, per source

	mu     sync.Mutex
	nonces map[string]time.Time // outstanding nonce -> expiry
}

func newJoinGuard() *joinGuard {
	return &joinGuard{
		challenges: keyrate.New(1, 10, 0),
		// Five tries, then one every ten seconds: a joining node with the
		// right secret needs one; guessing gets six a minute.
		failures: keyrate.New(0.1, 5, 0),
		nonces:   map[string]time.Time{},
	}
}

// blocked reports whether src has no failed proof left, and for how long.
func (g *joinGuard) blocked(src string) (time.Duration, bool) {
	d := g.failures.Delay(src)
	return d, d > 0
}

func (g *joinGuard) newNonce(now time.Time) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.nonces) >= maxChallenges {
		for n, exp := range g.nonces {
			if now.After(exp) {
				delete(g.nonces, n)
			}
		}
		if len(g.nonces) >= maxChallenges {
			return nil, errors.New("too many outstanding challenges")
		}
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	g.nonces[string(nonce)] = now.Add(challengeTTL)
	return nonce, nil
}

// takeNonce spends nonce: true if it was outstanding and fresh.
func (g *joinGuard) takeNonce(nonce []byte, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	exp, ok := g.nonces[string(nonce)]
	delete(g.nonces, string(nonce))
	return ok && !now.After(exp)
}

// sourceOf is the address a request came from (the device's, behind a
// balancer that sends the PROXY protocol), an IPv6 one by its /64.
func sourceOf(r *http.Request) string { return keyrate.Source(r.RemoteAddr) }

// refuse answers a node-certificate request with an error, logs it and
// reports it.
func (c *Cluster) refuse(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if status == http.StatusTooManyRequests {
		c.log.Debug("node certificate request refused", "remote", sourceOf(r), "code", code)
	} else {
		c.log.Warn("node certificate request refused", "remote", sourceOf(r), "code", code, "reason", msg)
		if c.cfg.Refused != nil {
			c.cfg.Refused(r, status, code, msg)
		}
	}
	writeRPCError(w, status, code, msg)
}

func (c *Cluster) tooManyAttempts(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
	c.refuse(w, r, http.StatusTooManyRequests, "too_many_attempts", "too many failed node certificate requests from this address; try later")
}

// serveChallenge hands out a nonce for one proof of the join secret.
func (c *Cluster) serveChallenge(w http.ResponseWriter, r *http.Request) {
	src := sourceOf(r)
	if wait, blocked := c.joins.blocked(src); blocked {
		c.tooManyAttempts(w, r, wait)
		return
	}
	if !c.joins.challenges.Allow(src) {
		c.tooManyAttempts(w, r, c.joins.challenges.Delay(src))
		return
	}
	ca := c.tls.anchor()
	if ca == nil {
		writeRPCError(w, http.StatusServiceUnavailable, "unavailable", "this member has no cluster CA yet")
		return
	}
	nonce, err := c.joins.newNonce(time.Now())
	if err != nil {
		w.Header().Set("Retry-After", "10")
		writeRPCError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(challengeReply{Nonce: nonce, CA: ca.Raw})
}

// serveNodeCert issues a node certificate to a node that proves the join
// secret for a challenge, or renews one for a node that shows its current
// certificate (for its own id only).
func (c *Cluster) serveNodeCert(w http.ResponseWriter, r *http.Request) {
	src := sourceOf(r)
	renewing := c.authorized(r)
	if !renewing {
		if wait, blocked := c.joins.blocked(src); blocked {
			c.tooManyAttempts(w, r, wait)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxNodeCertBody))
	if err != nil {
		c.refuse(w, r, http.StatusRequestEntityTooLarge, "too_large", "node certificate request over 64 KiB")
		return
	}
	var req nodeCertRequest
	if err := json.Unmarshal(body, &req); err != nil || !validNodeID(req.ID) {
		c.refuse(w, r, http.StatusBadRequest, "bad_request", "node certificate request needs an id (1 to 128 printable characters) and a csr")
		return
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil || csr.CheckSignature() != nil {
		c.refuse(w, r, http.StatusBadRequest, "bad_request", "node certificate request: bad CSR")
		return
	}
	if renewing {
		if peer := r.TLS.PeerCertificates[0].Subject.CommonName; peer != req.ID {
			c.refuse(w, r, http.StatusForbidden, "forbidden", fmt.Sprintf("node %q may renew only its own certificate, not %q", peer, req.ID))
			return
		}
	} else if !c.joins.takeNonce(req.Nonce, time.Now()) || c.cfg.Secret == "" ||
		!hmac.Equal(req.Proof, joinProof(c.cfg.Secret, req.Nonce, req.ID, req.CSR)) {
		c.joins.failures.Allow(src)
		c.refuse(w, r, http.StatusForbidden, "join_refused", fmt.Sprintf("node %q: no valid proof of the join secret for an outstanding challenge", req.ID))
		return
	}
	der, err := c.tls.issue(r.Context(), req.ID, csr.PublicKey)
	if err != nil {
		writeRPCError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	ca := c.tls.anchor()
	out := nodeCertReply{Cert: der, CA: ca.Raw}
	how := "renewal"
	if !renewing {
		out.Proof, how = memberProof(c.cfg.Secret, req.Proof, der, ca.Raw), "join secret"
	}
	c.log.Info("issued a node certificate", "node", req.ID, "remote", src, "by", how)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func validNodeID(id string) bool {
	if id == "" || len(id) > maxNodeID {
		return false
	}
	for _, r := range id {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}

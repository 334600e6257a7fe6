package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/atomicfile"
	"github.com/quorumca/quorumca/internal/backoff"
)

// The API's certificate from the cluster itself (api.tls_provisioner): each
// node gets its own, for a key it makes and keeps in its data directory,
// from a provisioner of kind server, and replaces it two thirds through its
// life, as it does its node certificate. It is served only while the
// replicated state records it as this node's (apiCertRecordProblem): a
// revoked one, or one the state does not know, is dropped within seconds.
// Without one (a new cluster has no authority yet, or it was dropped) the
// node serves api.tls_cert_file if set, else a self-signed placeholder no
// client trusts, and /v1/ready answers no_api_certificate unless the files
// serve. A restart serves the stored certificate at once, so a node that
// comes back while the cluster has no quorum still answers with a valid one.

const (
	apiCertFile = "api-tls.pem"
	apiKeyFile  = "api-tls.key"

	apiCertBurst = 10
	apiCertEvery = 6 * time.Minute
)

// servedAPICert is the API certificate for a new handshake: the cluster's,
// else the files', else the placeholder.
func (n *Node) servedAPICert() *tls.Certificate {
	if c := n.issuedAPICert.Load(); c != nil {
		return c
	}
	return n.apiCert.Load()
}

// apiCertProblem says why the API certificate served would fail a client
// that trusts the authority: "" when it would not. Only with
// api.tls_provisioner; a file's certificate is the operator's to watch.
func (n *Node) apiCertProblem() string {
	if n.cfg.TLSProvisioner == "" {
		return ""
	}
	if c := n.issuedAPICert.Load(); c != nil {
		if time.Now().After(c.Leaf.NotAfter) {
			return "the API certificate expired at " + c.Leaf.NotAfter.Format(time.RFC3339)
		}
		return n.apiCertRecordProblem(c)
	}
	c := n.apiCert.Load()
	switch {
	case c == nil || c.Leaf == nil || n.placeholder.Load():
		return "no API certificate from provisioner " + n.cfg.TLSProvisioner + " yet"
	case time.Now().After(c.Leaf.NotAfter):
		return "no API certificate from provisioner " + n.cfg.TLSProvisioner + ", and api.tls_cert_file's expired at " + c.Leaf.NotAfter.Format(time.RFC3339)
	}
	return ""
}

// apiCertRecordProblem says why c is not, in this node's state, a live
// certificate the cluster issued to this node from the configured
// provisioner: "" when it is. A certificate stored in the data directory
// is served only on that record's word: not one from another cluster, a
// state restored from before it, or a file someone put there.
func (n *Node) apiCertRecordProblem(c *tls.Certificate) string {
	serial := authority.SerialHex(c.Leaf.SerialNumber)
	rec, err := n.fsm.Cert(serial)
	switch {
	case errors.Is(err, fsm.ErrNotFound):
		return "the API certificate " + serial + " has no record in the cluster's state"
	case err != nil:
		return "the API certificate's record cannot be read: " + err.Error()
	case !bytes.Equal(rec.DER, c.Certificate[0]):
		return "the API certificate is not the one the cluster recorded under serial " + serial
	case rec.Revoked():
		return "the API certificate " + serial + " has been revoked"
	case rec.Provisioner != n.cfg.TLSProvisioner || rec.Requester != authority.ServerRequester(n.cfg.NodeName):
		return fmt.Sprintf("the API certificate %s was issued by provisioner %s to %s", serial, rec.Provisioner, rec.Requester)
	}
	return ""
}

// apiHosts are the names this node is reached by: its advertised API host
// and its public URLs' hosts.
func apiHosts(advertise string, publicURLs []string) []string {
	var out []string
	if h, _, err := net.SplitHostPort(advertise); err == nil {
		out = append(out, h)
	}
	for _, u := range publicURLs {
		if p, err := url.Parse(u); err == nil && p.Hostname() != "" {
			out = append(out, p.Hostname())
		}
	}
	return out
}

// startAPICert serves the stored certificate, or a placeholder when no
// file is configured, and keeps the certificate current.
func (n *Node) startAPICert(hosts []string, reg prometheus.Registerer) error {
	dir := n.cfg.DataDir
	certPath := filepath.Join(dir, apiCertFile)
	if c, err := loadAPIPair(certPath, filepath.Join(dir, apiKeyFile)); err == nil && time.Now().Before(c.Leaf.NotAfter) {
		if why := n.apiCertRecordProblem(c); why != "" {
			n.log.Warn("stored API certificate not served", "why", why)
		} else {
			issued := c.Leaf.NotBefore
			if st, err := os.Stat(certPath); err == nil && st.ModTime().After(issued) {
				issued = st.ModTime() // written when issued; NotBefore is backdated
			}
			n.apiCertRenewAt.Store(renewAt(issued, c.Leaf.NotAfter).UnixNano())
			n.issuedAPICert.Store(c)
		}
	}
	if n.apiCert.Load() == nil {
		// What serves whenever the node has no certificate of the cluster
		// (dropped when revoked, say) and no files.
		ph, err := placeholderCert(hosts)
		if err != nil {
			return err
		}
		n.apiCert.Store(ph)
		n.placeholder.Store(true)
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "quorumca_api_certificate_expiry_seconds",
		Help: "Seconds until the API certificate this node serves expires; negative once expired, 0 while it has none from the cluster.",
	}, func() float64 {
		c := n.issuedAPICert.Load()
		if c == nil && !n.placeholder.Load() {
			c = n.apiCert.Load()
		}
		if c == nil || c.Leaf == nil {
			return 0
		}
		return time.Until(c.Leaf.NotAfter).Seconds()
	}))
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.keepAPICert(n.ctx, hosts) }()
	return nil
}

// keepAPICert issues a certificate whenever there is none from the
// cluster, or the current one is two thirds through its life. One whose
// record no longer vouches for it (revoked, say) is dropped at once, so the
// files serve meanwhile. Issuances are limited (apiCertBurst, then one per
// apiCertEvery): revoking each new certificate cannot make a node sign
// without end.
func (n *Node) keepAPICert(ctx context.Context, hosts []string) {
	b := backoff.New(time.Second, 30*time.Second)
	lim := rate.NewLimiter(rate.Every(apiCertEvery), apiCertBurst)
	var lastErr string
	for {
		if c := n.issuedAPICert.Load(); c != nil {
			if why := n.apiCertRecordProblem(c); why != "" {
				n.issuedAPICert.Store(nil)
				n.log.Warn("API certificate dropped; issuing another", "why", why)
			} else if !n.apiCertDue(c, hosts) {
				// Local reads only: a revocation is noticed within seconds.
				if !backoff.Sleep(ctx, min(5*time.Second, time.Until(time.Unix(0, n.apiCertRenewAt.Load())))) {
					return
				}
				continue
			}
		}
		if tokens := lim.Tokens(); tokens < 1 {
			wait := time.Duration((1 - tokens) * float64(apiCertEvery))
			n.log.Warn("API certificates issued too often (revoked one after another?); waiting", "wait", wait.Round(time.Second))
			if !backoff.Sleep(ctx, wait) {
				return
			}
			continue
		}
		err := n.renewAPICert(ctx, hosts)
		if err == nil {
			lim.Allow() // only issuances count: failures have the backoff
			b.Reset()
			lastErr = ""
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if err.Error() != lastErr { // once per distinct failure, not every retry
			n.log.Warn("API certificate not issued; retrying", "provisioner", n.cfg.TLSProvisioner, "err", err)
			lastErr = err.Error()
		}
		if !b.Wait(ctx) {
			return
		}
	}
}

// renewAt is two thirds of the way from when a certificate was issued to
// its expiry (its NotBefore is backdated: that would make a short-lived
// one due at once).
func renewAt(issued, notAfter time.Time) time.Time {
	return issued.Add(notAfter.Sub(issued) * 2 / 3)
}

// apiCertDue: c is two thirds through its life, or does not carry the
// names the provisioner now gives this node (an admin changed its policy).
func (n *Node) apiCertDue(c *tls.Certificate, hosts []string) bool {
	if time.Now().UnixNano() >= n.apiCertRenewAt.Load() {
		return true
	}
	p, err := n.fsm.Provisioner(n.cfg.TLSProvisioner)
	if err != nil {
		return false // not applied here yet: keep what works
	}
	want := authority.ServerNames(&p.Policy, hosts)
	var have []string
	have = append(have, c.Leaf.DNSNames...)
	for _, ip := range c.Leaf.IPAddresses {
		have = append(have, ip.String())
	}
	slices.Sort(want)
	slices.Sort(have)
	return !slices.Equal(want, have)
}

// renewAPICert makes a key, has the cluster certify it, stores both and
// serves them.
func (n *Node) renewAPICert(ctx context.Context, hosts []string) error {
	p, err := n.ca.Provisioner(ctx, n.cfg.TLSProvisioner)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	issued := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	iss, err := n.ca.IssueServerCert(ctx, p.Name, n.cfg.NodeName, key.Public(), authority.ServerNames(&p.Policy, hosts))
	if err != nil {
		return err
	}
	// Served only once this node's state holds its record (committed, and
	// maybe not applied here yet): the record is what vouches for it.
	if err := n.ca.CaughtUp(ctx); err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	chain := append([][]byte{iss.Cert.DER}, iss.Chain...)
	var certPEM []byte
	for _, der := range chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	// The key first: a certificate on disk always has its key beside it.
	dir := n.cfg.DataDir
	if err := atomicfile.Write(filepath.Join(dir, apiKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, apiCertFile), certPEM, 0o600); err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(iss.Cert.DER)
	if err != nil {
		return err
	}
	n.apiCertRenewAt.Store(renewAt(issued, leaf.NotAfter).UnixNano())
	n.issuedAPICert.Store(&tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf})
	n.placeholder.Store(false)
	n.log.Info("API certificate issued by the cluster", "serial", iss.Cert.Serial, "names", leaf.DNSNames, "ips", leaf.IPAddresses,
		"not_after", leaf.NotAfter.Format(time.RFC3339))
	return nil
}

// loadAPIPair reads a certificate chain and its key, with the leaf parsed.
func loadAPIPair(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// placeholderCert is a self-signed certificate no client trusts: the API
// listener needs one before the cluster can issue the real one.
func placeholderCert(hosts []string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "quorumca placeholder: no API certificate issued yet"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("node: placeholder API certificate: %w", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

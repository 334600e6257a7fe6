package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"time"
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

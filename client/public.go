package client

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/api/apitypes"
)

// What anyone may ask, without an admin token: trust anchors, certificate
// records, CRLs, OCSP and the node's health.

// Roots are the trust anchors of every authority, or of one (name).
func (c *Client) Roots(ctx context.Context, name string) ([]*x509.Certificate, error) {
	path := "/v1/roots"
	if name != "" {
		path = "/v1/authorities/" + url.PathEscape(name) + "/roots"
	}
	var out struct{ Roots []string }
	if err := c.Do(ctx, "GET", path, nil, &out); err != nil {
		return nil, err
	}
	var roots []*x509.Certificate
	for _, p := range out.Roots {
		blk, _ := pem.Decode([]byte(p))
		if blk == nil {
			return nil, fmt.Errorf("client: a root is not PEM")
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("client: root: %w", err)
		}
		roots = append(roots, cert)
	}
	return roots, nil
}

// Cert is the record of an issued certificate: names, provisioner,
// status (valid, revoked, expired), what it renewed.
func (c *Client) Cert(ctx context.Context, serial string) (*Cert, error) {
	var out Cert
	return &out, c.Do(ctx, "GET", "/v1/certs/"+url.PathEscape(serial), nil, &out)
}

// RenewalInfo is when to renew a certificate (RFC 9773): at a time picked
// at random between Start and End. Reason says why the CA moved the
// window to now (a revocation, an issuer rotation), if it did.
type RenewalInfo struct {
	Start, End time.Time
	Reason     string
}

// RenewalInfo asks when to renew the certificate serial.
func (c *Client) RenewalInfo(ctx context.Context, serial string) (*RenewalInfo, error) {
	var out apitypes.RenewalInfo
	if err := c.Do(ctx, "GET", "/v1/certs/"+url.PathEscape(serial)+"/renewal-info", nil, &out); err != nil {
		return nil, err
	}
	return &RenewalInfo{Start: out.SuggestedWindow.Start, End: out.SuggestedWindow.End, Reason: out.Reason}, nil
}

// CRL is an issuer's current CRL, checked against issuer's signature:
// the complete one (shard -1) or a shard of a partitioned CRL. Authority
// "" and issuerID "" are the default authority's newest issuer.
func (c *Client) CRL(ctx context.Context, authority, issuerID string, shard int, issuer *x509.Certificate) (*x509.RevocationList, error) {
	path := "/v1/crl"
	switch {
	case issuerID != "":
		path = "/v1/authorities/" + url.PathEscape(orDefault(authority)) + "/issuers/" + url.PathEscape(issuerID) + "/crl"
		if shard >= 0 {
			path += "/" + strconv.Itoa(shard)
		}
	case authority != "":
		path = "/v1/authorities/" + url.PathEscape(authority) + "/crl"
	}
	var der []byte
	if err := c.Do(ctx, "GET", path, nil, &der); err != nil {
		return nil, err
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("client: CRL: %w", err)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("client: CRL: %w", err)
	}
	return crl, nil
}

// OCSP asks the CA for cert's status (RFC 5019 GET, no nonce, so a cached
// answer may come back) and checks the answer against issuer.
func (c *Client) OCSP(ctx context.Context, cert, issuer *x509.Certificate) (*ocsp.Response, error) {
	req, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		return nil, err
	}
	var der []byte
	if err := c.Do(ctx, "GET", "/v1/ocsp/"+url.PathEscape(base64.StdEncoding.EncodeToString(req)), nil, &der); err != nil {
		return nil, err
	}
	return ocsp.ParseResponseForCert(der, cert, issuer)
}

// Health is a node's view of the cluster, as GET /v1/health answers it.
type Health struct {
	Node         string  `json:"node"`
	RaftState    string  `json:"raft_state"`
	Leader       string  `json:"leader"`
	LeaderAPI    string  `json:"leader_api,omitempty"`
	Term         uint64  `json:"term"`
	AppliedIndex uint64  `json:"applied_index"`
	CommitIndex  uint64  `json:"commit_index"`
	LastContact  float64 `json:"last_contact_seconds"`
	Voters       int     `json:"voters"`
	NonVoters    int     `json:"nonvoters"`
	// ClusterCA is the hex SHA-256 of the cluster CA's public key (what
	// cluster.ca_fingerprint pins, and what signs audit checkpoints).
	ClusterCA string `json:"cluster_ca_fingerprint,omitempty"`
	// Autopilot is set by the leader of a gossip cluster: how it judges
	// each server (non-voters are promoted once stable).
	Autopilot *Autopilot `json:"autopilot,omitempty"`
}

// Autopilot is the leader's view of the servers' health.
type Autopilot struct {
	Healthy          bool              `json:"healthy"`
	FailureTolerance int               `json:"failure_tolerance"`
	Servers          []AutopilotServer `json:"servers"`
}

// AutopilotServer is one server as the leader's autopilot judges it.
type AutopilotServer struct {
	ID          string    `json:"id"`
	Status      string    `json:"status"`     // alive, failed (gone past dead_server_cleanup), unknown (gone for less)
	RaftState   string    `json:"raft_state"` // leader, voter, non-voter
	Healthy     bool      `json:"healthy"`
	Stable      bool      `json:"stable"` // healthy for the stabilization time
	StableSince time.Time `json:"stable_since"`
	LastContact float64   `json:"last_contact_seconds"`
	LastIndex   uint64    `json:"last_index"`
}

// Health reports the node's Raft state; it answers while the node runs.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var out Health
	return &out, c.Do(ctx, "GET", "/v1/health", nil, &out)
}

// Ready is nil when the node should take traffic (it knows and hears
// from a leader, has applied what was acknowledged, and can sign), and the
// node's reason otherwise (an *Error: no_leader, catching_up, ...).
// Asked once, without retries: a 503 is the answer.
func (c *Client) Ready(ctx context.Context) error {
	return c.once(ctx, "GET", c.base+"/v1/ready", nil, false, nil)
}

func orDefault(name string) string {
	if name == "" {
		return "default"
	}
	return name
}

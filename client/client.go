// Package client is the Go client of the quorumca API: the CLI, the device
// agent and the load-test harness use it, and so can any Go program.
//
// One Client talks to one cluster through any of its nodes (Config.Addrs
// to fail over), retrying refused connections and 503s for RetryFor. What
// it asks falls in three groups: enrollment and renewal (Sign, Renew,
// with a token or the current certificate); what anyone may read (Roots,
// Cert, CRL, CRLBundle, OCSP, Health, Ready); and the admin API
// (Config.AdminToken or an admin certificate: provisioners, tokens,
// certificates, authorities, admins, the audit log, the cluster's peers
// and snapshots). Errors from the API are *Error, with the API's code,
// the HTTP status and any Retry-After. See Example for a device's life.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quorumca/quorumca/internal/backoff"
)

// Config says where the CA is and how to talk to it.
type Config struct {
	Addr       string         // https://host:port; default https://127.0.0.1:8443
	Addrs      []string       // more addresses (other nodes) to fail over to
	CAFile     string         // trust anchors for the API's certificate
	RootCAs    *x509.CertPool // trust anchors, instead of CAFile
	AdminToken string
	Timeout    time.Duration
	// RetryFor is how long a request is retried, across the addresses, when
	// a node refuses the connection or answers 503 (no leader, shutting
	// down, signer away, the cluster timed out). A 503 may come after the
	// write was committed; a retry still does nothing twice, as enrollment
	// and renewal with the same token or certificate and key answer with
	// the certificate already issued. Default 15s; negative: no retries.
	RetryFor time.Duration
	// Certificates are presented in TLS handshakes (renewal, admin mTLS).
	Certificates []tls.Certificate
}

// FromEnv fills empty fields from QUORUMCA_ADDR, QUORUMCA_CA_FILE,
// QUORUMCA_ADMIN_TOKEN and QUORUMCA_ADMIN_TOKEN_FILE.
func (c Config) FromEnv() (Config, error) {
	if c.Addr == "" {
		c.Addr = os.Getenv("QUORUMCA_ADDR")
	}
	if c.CAFile == "" {
		c.CAFile = os.Getenv("QUORUMCA_CA_FILE")
	}
	if c.AdminToken == "" {
		c.AdminToken = os.Getenv("QUORUMCA_ADMIN_TOKEN")
	}
	if f := os.Getenv("QUORUMCA_ADMIN_TOKEN_FILE"); c.AdminToken == "" && f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return c, err
		}
		c.AdminToken = strings.TrimSpace(string(b))
	}
	return c, nil
}

// Client calls the API.
type Client struct {
	base     string   // the first address
	addrs    []string // every address, tried in turn
	token    string
	retryFor time.Duration
	http     *http.Client
	next     atomic.Uint32
}

// New builds a client.
func New(c Config) (*Client, error) {
	if c.Addr == "" {
		c.Addr = "https://127.0.0.1:8443"
	}
	if c.Timeout == 0 {
		c.Timeout = 60 * time.Second
	}
	if c.RetryFor == 0 {
		c.RetryFor = 15 * time.Second
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: c.Certificates, RootCAs: c.RootCAs}
	if c.CAFile != "" && c.RootCAs == nil {
		b, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("ca file %s holds no certificate", c.CAFile)
		}
	}
	cl := &Client{
		base:     strings.TrimSuffix(c.Addr, "/"),
		token:    c.AdminToken,
		retryFor: c.RetryFor,
		http:     &http.Client{Timeout: c.Timeout, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 16}},
	}
	cl.addrs = []string{cl.base}
	for _, a := range c.Addrs {
		if a = strings.TrimSuffix(a, "/"); a != cl.base {
			cl.addrs = append(cl.addrs, a)
		}
	}
	return cl, nil
}

// maxRetryAfter bounds the wait a Retry-After header asks for.
const maxRetryAfter = 5 * time.Second

// retryable reports whether a request can be sent again: the connection
// was refused (nothing was sent), or the node answered 503.
func retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status == http.StatusServiceUnavailable
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// Error is an error reply of the API.
type Error struct {
	Status     int
	Code       string        `json:"code"`
	Message    string        `json:"message"`
	RetryAfter time.Duration // from a Retry-After header in seconds; 0 if none
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code) }

// Do sends a JSON request and decodes the JSON reply into out (if not nil).
// A refused connection or a 503 is retried, on the next address, with
// jittered backoff, for up to RetryFor.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(c.retryFor)
	retry := backoff.New(50*time.Millisecond, time.Second)
	for {
		addr := c.addrs[int(c.next.Load())%len(c.addrs)]
		err := c.once(ctx, method, addr+path, body, in != nil, out)
		if err == nil || !retryable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		c.next.Add(1) // this node is away: try the next
		d := retry.Next()
		if e := (*Error)(nil); errors.As(err, &e) && e.RetryAfter > d {
			// The node's hint, bounded: a wrong one never parks the caller.
			d = min(e.RetryAfter, maxRetryAfter, time.Until(deadline))
		}
		if !backoff.Sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

func (c *Client) once(ctx context.Context, method, url string, body []byte, hasBody bool, out any) error {
	var rd io.Reader
	if hasBody {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return errorFrom(resp, data)
	}
	if raw, ok := out.(*[]byte); ok { // a body that is not JSON (PEM, DER)
		*raw = data
		return nil
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// errorFrom reads an API error reply.
func errorFrom(resp *http.Response, data []byte) error {
	var e struct{ Error Error }
	if json.Unmarshal(data, &e) != nil || e.Error.Code == "" {
		e.Error = Error{Code: "http_error", Message: strings.TrimSpace(string(data))}
	}
	e.Error.Status = resp.StatusCode
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		e.Error.RetryAfter = time.Duration(secs) * time.Second
	}
	return &e.Error
}

// CloseIdleConnections closes connections kept for reuse.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Addr is the first address the client calls.
func (c *Client) Addr() string { return c.base }

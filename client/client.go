// Package client is the Go client of the quorumca API, used by the CLI and,
// later, the device agent and the load-test harness.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Config says where the CA is and how to talk to it.
type Config struct {
	Addr       string // https://host:port; default https://127.0.0.1:8443
	CAFile     string // trust anchors for the API's certificate
	AdminToken string
	Timeout    time.Duration
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
	base  string
	token string
	http  *http.Client
}

// New builds a client.
func New(c Config) (*Client, error) {
	if c.Addr == "" {
		c.Addr = "https://127.0.0.1:8443"
	}
	if c.Timeout == 0 {
		c.Timeout = 60 * time.Second
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		b, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("ca file %s holds no certificate", c.CAFile)
		}
	}
	return &Client{
		base:  strings.TrimSuffix(c.Addr, "/"),
		token: c.AdminToken,
		http:  &http.Client{Timeout: c.Timeout, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}},
	}, nil
}

// Error is an error reply of the API.
type Error struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code) }

// Do sends a JSON request and decodes the JSON reply into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
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
		var e struct{ Error Error }
		if json.Unmarshal(data, &e) != nil || e.Error.Code == "" {
			return &Error{Status: resp.StatusCode, Code: "http_error", Message: strings.TrimSpace(string(data))}
		}
		e.Error.Status = resp.StatusCode
		return &e.Error
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

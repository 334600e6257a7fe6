package client

import (
	"context"
	"net/url"
	"time"
)

// OCSPResponder is an authority's delegated OCSP responder.
type OCSPResponder struct {
	Authority    string                     `json:"authority"`
	KeyURI       string                     `json:"key_uri"`
	TTL          string                     `json:"ttl"`
	Certificates []OCSPResponderCertificate `json:"certificates"`
	Version      uint64                     `json:"version"`
	UpdatedAt    time.Time                  `json:"updated_at"`
}

// OCSPResponderCertificate certifies the responder's key for one issuer.
type OCSPResponderCertificate struct {
	Issuer      string    `json:"issuer"`
	Certificate string    `json:"certificate"`
	NotAfter    time.Time `json:"not_after"`
}

// SetOCSPResponder is the body that sets an authority's responder up.
type SetOCSPResponder struct {
	TTL string `json:"ttl,omitempty"`
	KeyOptions
}

func ocspResponderPath(name string) string {
	return "/v1/admin/authorities/" + url.PathEscape(name) + "/ocsp-responder"
}

func (c *Client) SetOCSPResponder(ctx context.Context, name string, req SetOCSPResponder) (*OCSPResponder, error) {
	var r OCSPResponder
	return &r, c.Do(ctx, "PUT", ocspResponderPath(name), req, &r)
}

func (c *Client) OCSPResponder(ctx context.Context, name string) (*OCSPResponder, error) {
	var r OCSPResponder
	return &r, c.Do(ctx, "GET", ocspResponderPath(name), nil, &r)
}

func (c *Client) DeleteOCSPResponder(ctx context.Context, name string) error {
	return c.Do(ctx, "DELETE", ocspResponderPath(name), nil, nil)
}

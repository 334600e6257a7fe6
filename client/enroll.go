package client

import (
	"context"
	"time"
)

// Signed is an issued certificate.
type Signed struct {
	Serial      string    `json:"serial"`
	Certificate string    `json:"certificate"` // PEM
	Chain       []string  `json:"chain"`       // PEM, issuing certificate first
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	RenewedFrom string    `json:"renewed_from,omitempty"`
}

// Sign trades a single-use token and a CSR (PEM) for a certificate.
func (c *Client) Sign(ctx context.Context, csr []byte, token string) (*Signed, error) {
	var out Signed
	err := c.Do(ctx, "POST", "/v1/sign", map[string]string{"csr": string(csr), "token": token}, &out)
	return &out, err
}

// Renew renews the certificate the client presents in its TLS handshake
// (Config.Certificates); csr, if not nil, rotates the key.
func (c *Client) Renew(ctx context.Context, csr []byte) (*Signed, error) {
	var out Signed
	var in any
	if csr != nil {
		in = map[string]string{"csr": string(csr)}
	}
	err := c.Do(ctx, "POST", "/v1/renew", in, &out)
	return &out, err
}

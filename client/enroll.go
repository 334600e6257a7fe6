package client

import (
	"context"

	"github.com/quorumca/quorumca/api/apitypes"
)

// Sign trades a single-use token and a CSR (PEM) for a certificate.
func (c *Client) Sign(ctx context.Context, csr []byte, token string) (*Signed, error) {
	var out Signed
	err := c.Do(ctx, "POST", "/v1/sign", apitypes.SignRequest{CSR: string(csr), Token: token}, &out)
	return &out, err
}

// Renew renews the certificate the client presents in its TLS handshake
// (Config.Certificates); csr, if not nil, rotates the key.
func (c *Client) Renew(ctx context.Context, csr []byte) (*Signed, error) {
	var out Signed
	var in any
	if csr != nil {
		in = apitypes.RenewRequest{CSR: string(csr)}
	}
	err := c.Do(ctx, "POST", "/v1/renew", in, &out)
	return &out, err
}

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

// SignX5C enrolls a device with an x5c provisioner: the client presents
// the device's factory certificate in its TLS handshake
// (Config.Certificates).
func (c *Client) SignX5C(ctx context.Context, csr []byte, provisioner string) (*Signed, error) {
	var out Signed
	err := c.Do(ctx, "POST", "/v1/sign", apitypes.SignRequest{CSR: string(csr), Provisioner: provisioner}, &out)
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

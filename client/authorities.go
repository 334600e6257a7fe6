package client

import (
	"context"
	"encoding/json"
	"net/url"

	"github.com/quorumca/quorumca/api/apitypes"
)

func (c *Client) CreateAuthority(ctx context.Context, req CreateAuthority) (*Authority, error) {
	var a Authority
	return &a, c.Do(ctx, "POST", "/v1/admin/authorities", req, &a)

}

func (c *Client) AuthorityCSR(ctx context.Context, key KeyOptions, commonName string) (*CSR, error) {
	var out CSR
	in := apitypes.CSRRequest{CommonName: commonName, KeyOptions: key}
	return &out, c.Do(ctx, "POST", "/v1/admin/authorities/csr", in, &out)

}

func (c *Client) ImportAuthority(ctx context.Context, req ImportAuthority) (*Authority, error) {
	var a Authority
	return &a, c.Do(ctx, "POST", "/v1/admin/authorities/import", req, &a)

}

func (c *Client) RotateAuthority(ctx context.Context, name string, req RotateAuthority) (*Authority, error) {
	var a Authority
	return &a, c.Do(ctx, "POST", "/v1/admin/authorities/"+url.PathEscape(name)+"/rotate", req, &a)

}

func (c *Client) UpdateAuthority(ctx context.Context, name string, req UpdateAuthority) (*Authority, error) {
	var a Authority
	return &a, c.Do(ctx, "PATCH", "/v1/admin/authorities/"+url.PathEscape(name), req, &a)
}

// RevokeIssuer revokes an intermediate; reason is an RFC 5280 name. force
// allows the authority's last active issuer.
func (c *Client) RevokeIssuer(ctx context.Context, name, issuer, reason string, force bool) (*Authority, error) {
	var a Authority
	in := map[string]any{"reason": reason, "force": force}
	return &a, c.Do(ctx, "POST", "/v1/admin/authorities/"+url.PathEscape(name)+"/issuers/"+url.PathEscape(issuer)+"/revoke", in, &a)
}

// RootCRLRequest is what an offline root's next CRL must say (the JSON
// `operator authority crl-sign` signs).
func (c *Client) RootCRLRequest(ctx context.Context, name, root string) (json.RawMessage, error) {
	var out json.RawMessage
	path := "/v1/admin/authorities/" + url.PathEscape(name) + "/root-crl-request"
	if root != "" {
		path += "?root=" + url.QueryEscape(root)
	}
	return out, c.Do(ctx, "GET", path, nil, &out)
}

// ImportRootCRL gives the cluster a CRL an offline root signed (PEM).
func (c *Client) ImportRootCRL(ctx context.Context, name string, crlPEM []byte) (string, error) {
	var out struct {
		RootID string `json:"root_id"`
	}
	err := c.Do(ctx, "POST", "/v1/admin/authorities/"+url.PathEscape(name)+"/root-crl", map[string]string{"crl": string(crlPEM)}, &out)
	return out.RootID, err
}

// CRLBundle is every current CRL of an authority as PEM: what nginx
// (ssl_crl) and HAProxy (crl-file) read.
func (c *Client) CRLBundle(ctx context.Context, name string) ([]byte, error) {
	var out []byte
	return out, c.Do(ctx, "GET", "/v1/authorities/"+url.PathEscape(name)+"/crls.pem", nil, &out)
}

func (c *Client) Authorities(ctx context.Context) ([]Authority, error) {
	var out struct{ Authorities []Authority }
	err := c.Do(ctx, "GET", "/v1/admin/authorities", nil, &out)
	return out.Authorities, err
}

package client

import (
	"context"
	"net/url"
)

// Delegated keys of an authority, by the path that names their role:
// "ocsp-responder" (its OCSP answers) or "scep-ra" (SCEP's RA).
const (
	DelegateOCSP = "ocsp-responder"
	DelegateSCEP = "scep-ra"
)

func delegatePath(role, name string) string {
	return "/v1/admin/authorities/" + url.PathEscape(name) + "/" + role
}

func (c *Client) SetDelegate(ctx context.Context, role, name string, req SetOCSPResponder) (*OCSPResponder, error) {
	var r OCSPResponder
	return &r, c.Do(ctx, "PUT", delegatePath(role, name), req, &r)
}

func (c *Client) Delegate(ctx context.Context, role, name string) (*OCSPResponder, error) {
	var r OCSPResponder
	return &r, c.Do(ctx, "GET", delegatePath(role, name), nil, &r)
}

func (c *Client) DeleteDelegate(ctx context.Context, role, name string) error {
	return c.Do(ctx, "DELETE", delegatePath(role, name), nil, nil)
}

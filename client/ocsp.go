package client

import (
	"context"
	"net/url"
)

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

package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
)

// Peer is a member of the Raft configuration.
type Peer struct {
	ID       string `json:"id"`
	Address  string `json:"raft_addr"`
	APIAddr  string `json:"api_addr,omitempty"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var out struct{ Peers []Peer }
	err := c.Do(ctx, "GET", "/v1/admin/raft/peers", nil, &out)
	return out.Peers, err
}

func (c *Client) RemovePeer(ctx context.Context, id string) error {
	return c.Do(ctx, "DELETE", "/v1/admin/raft/peers/"+url.PathEscape(id), nil, nil)
}

// TransferLeadership hands leadership to id, or to any voter if id is "".
func (c *Client) TransferLeadership(ctx context.Context, id string) error {
	return c.Do(ctx, "POST", "/v1/admin/raft/transfer-leadership", map[string]string{"to": id}, nil)
}

// SaveSnapshot streams a checksummed snapshot of the whole state into w.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) error {
	resp, err := c.raw(ctx, "GET", "/v1/admin/snapshot", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// RestoreSnapshot replaces the cluster's state with a saved snapshot.
func (c *Client) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	resp, err := c.raw(ctx, "POST", "/v1/admin/snapshot", r)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// raw sends a streaming request (no retries: the body is read once) and
// turns an error reply into an *Error.
func (c *Client) raw(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	stream := &http.Client{Transport: c.http.Transport} // no overall timeout: large states
	resp, err := stream.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, c.decodeError(resp)
	}
	return resp, nil
}

func (c *Client) decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return errorFrom(resp, data)
}

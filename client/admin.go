package client

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/quorumca/quorumca/api/apitypes"
)

func (c *Client) Provisioners(ctx context.Context) ([]Provisioner, error) {
	var out struct{ Provisioners []Provisioner }
	err := c.Do(ctx, "GET", "/v1/admin/provisioners", nil, &out)
	return out.Provisioners, err
}

func (c *Client) Provisioner(ctx context.Context, name string) (*Provisioner, error) {
	var p Provisioner
	return &p, c.Do(ctx, "GET", "/v1/admin/provisioners/"+url.PathEscape(name), nil, &p)

}

func (c *Client) CreateProvisioner(ctx context.Context, p Provisioner) (*Provisioner, error) {
	var out Provisioner
	return &out, c.Do(ctx, "POST", "/v1/admin/provisioners", p, &out)

}

// UpdateProvisioner replaces a provisioner; p.Version must be the version read.
func (c *Client) UpdateProvisioner(ctx context.Context, p Provisioner) (*Provisioner, error) {
	var out Provisioner
	return &out, c.Do(ctx, "PUT", "/v1/admin/provisioners/"+url.PathEscape(p.Name), p, &out)

}

func (c *Client) DeleteProvisioner(ctx context.Context, name string, force bool) error {
	return c.Do(ctx, "DELETE", "/v1/admin/provisioners/"+url.PathEscape(name)+"?force="+strconv.FormatBool(force), nil, nil)
}

// Token is a minted token; Token (the secret) is only in mint replies.
type Token struct {
	Token       string            `json:"token,omitempty"`
	ID          string            `json:"id"`
	Provisioner string            `json:"provisioner"`
	SANs        []string          `json:"sans"`
	Properties  map[string]string `json:"properties,omitempty"`
	ExpiresAt   time.Time         `json:"expires_at"`
}

// MintTokens mints one token, or Count tokens.
func (c *Client) MintTokens(ctx context.Context, req TokenRequest) ([]Token, error) {
	if req.Count <= 1 {
		req.Count = 0
		var t Token
		err := c.Do(ctx, "POST", "/v1/admin/tokens", req, &[]*Token{&t}[0])
		return []Token{t}, err
	}
	var out struct{ Tokens []Token }
	err := c.Do(ctx, "POST", "/v1/admin/tokens", req, &out)
	return out.Tokens, err
}

// Tokens lists outstanding tokens, one page.
func (c *Client) Tokens(ctx context.Context, provisioner, cursor string) ([]Token, string, error) {
	var out struct {
		Tokens     []Token
		NextCursor string `json:"next_cursor"`
	}
	q := url.Values{"provisioner": {provisioner}, "cursor": {cursor}}
	err := c.Do(ctx, "GET", "/v1/admin/tokens?"+q.Encode(), nil, &out)
	return out.Tokens, out.NextCursor, err
}

func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.Do(ctx, "DELETE", "/v1/admin/tokens/"+url.PathEscape(id), nil, nil)
}

// CertQuery filters a certificate search.
type CertQuery struct {
	Serial, SAN, Provisioner, Property, Status string
	ExpiresAfter, ExpiresBefore                string // RFC 3339
	Cursor                                     string
	Limit                                      int
}

// SearchCerts returns one page of matching certificates.
func (c *Client) SearchCerts(ctx context.Context, q CertQuery) ([]Cert, string, error) {
	v := url.Values{}
	for k, s := range map[string]string{"serial": q.Serial, "san": q.SAN, "provisioner": q.Provisioner, "property": q.Property,
		"status": q.Status, "expires_after": q.ExpiresAfter, "expires_before": q.ExpiresBefore, "cursor": q.Cursor} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out struct {
		Certs      []Cert
		NextCursor string `json:"next_cursor"`
	}
	err := c.Do(ctx, "GET", "/v1/admin/certs?"+v.Encode(), nil, &out)
	return out.Certs, out.NextCursor, err
}

func (c *Client) RevokeCert(ctx context.Context, serial, reason string) (*Cert, error) {
	var out Cert
	return &out, c.Do(ctx, "POST", "/v1/admin/certs/"+url.PathEscape(serial)+"/revoke", map[string]string{"reason": reason}, &out)

}

// NewAdmin is a created admin credential: a token, or a certificate.
type NewAdmin struct {
	Admin       Admin    `json:"admin"`
	Token       string   `json:"token,omitempty"`
	Certificate string   `json:"certificate,omitempty"`
	Chain       []string `json:"chain,omitempty"`
}

func (c *Client) Admins(ctx context.Context) ([]Admin, error) {
	var out struct{ Admins []Admin }
	err := c.Do(ctx, "GET", "/v1/admin/admins", nil, &out)
	return out.Admins, err
}

// CreateAdmin makes a token admin, or with a CSR (PEM) a certificate admin.
func (c *Client) CreateAdmin(ctx context.Context, name, role, ttl, csr string) (*NewAdmin, error) {
	var out NewAdmin
	return &out, c.Do(ctx, "POST", "/v1/admin/admins", apitypes.AdminRequest{Name: name, Role: role, TTL: ttl, CSR: csr}, &out)

}

func (c *Client) RevokeAdmin(ctx context.Context, id string) error {
	return c.Do(ctx, "DELETE", "/v1/admin/admins/"+url.PathEscape(id), nil, nil)
}

func (c *Client) WhoAmI(ctx context.Context) (*Admin, error) {
	var out Admin
	return &out, c.Do(ctx, "GET", "/v1/admin/whoami", nil, &out)

}

// AuditEntry is one entry of the audit log.
type AuditEntry struct {
	Seq     uint64 `json:"seq"`
	Index   uint64 `json:"index"`
	Time    int64  `json:"time"`
	Command string `json:"command"`
	Actor   string `json:"actor,omitempty"`
	Remote  string `json:"remote,omitempty"`
	Note    string `json:"note,omitempty"`
	Outcome string `json:"outcome"`
	Prev    string `json:"prev"`
	Hash    string `json:"hash"`
}

// AuditQuery filters the audit log.
type AuditQuery struct {
	After          uint64 // entries after this sequence number; for a follow, 0 means from now on
	Command, Actor string
	Limit          int // entries per page (the server's default if 0, at most 1000)
}

func (q AuditQuery) values() url.Values {
	v := url.Values{}
	if q.After > 0 {
		v.Set("after", strconv.FormatUint(q.After, 10))
	}
	if q.Command != "" {
		v.Set("command", q.Command)
	}
	if q.Actor != "" {
		v.Set("actor", q.Actor)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// AuditPage is one page of the audit log. With More, the next page starts
// after NextAfter; without, NextAfter is the newest entry of the log, where
// a poller resumes.
type AuditPage struct {
	Entries   []AuditEntry `json:"entries"`
	More      bool         `json:"more"`
	NextAfter uint64       `json:"next_after"`
	// Checkpoint: entries up to it were cut from the state by retention
	// (archived, if the cluster has an archive); the kept chain follows
	// its hash. Present on a page that starts at or before it.
	Checkpoint *AuditCheckpoint `json:"checkpoint,omitempty"`
}

// AuditCheckpoint is where the kept audit chain starts, signed by the
// cluster CA key (Key: its PKIX DER).
type AuditCheckpoint struct {
	Seq       uint64 `json:"seq"`
	Hash      string `json:"hash"`
	Time      int64  `json:"time"`
	Key       []byte `json:"key"`
	Signature []byte `json:"signature"`
}

// AuditPage returns one page of audit entries.
func (c *Client) AuditPage(ctx context.Context, q AuditQuery) (*AuditPage, error) {
	var out AuditPage
	if err := c.Do(ctx, "GET", "/v1/admin/audit?"+q.values().Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Audit returns the entries of one page.
func (c *Client) Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	p, err := c.AuditPage(ctx, q)
	if err != nil {
		return nil, err
	}
	return p.Entries, nil
}

// AuditAll calls fn with every matching entry, page after page.
func (c *Client) AuditAll(ctx context.Context, q AuditQuery, fn func(AuditEntry) error) error {
	for {
		p, err := c.AuditPage(ctx, q)
		if err != nil {
			return err
		}
		for _, e := range p.Entries {
			if err := fn(e); err != nil {
				return err
			}
		}
		if !p.More {
			return nil
		}
		q.After = p.NextAfter
	}
}

// FollowAudit streams entries as they are applied until ctx ends or fn
// returns an error: those after q.After, or with q.After 0 those appended
// from now on. Too many follows at once are refused (429 too_many_streams).
func (c *Client) FollowAudit(ctx context.Context, q AuditQuery, fn func(AuditEntry) error) error {
	v := q.values()
	v.Set("follow", "true")
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/admin/audit?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	stream := &http.Client{Transport: c.http.Transport} // no overall timeout
	resp, err := stream.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return errorFrom(resp, data)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e AuditEntry
		if err := json.NewDecoder(strings.NewReader(sc.Text())).Decode(&e); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

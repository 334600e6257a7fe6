package client

import (
	"context"
	"encoding/json"
	"net/url"
	"time"
)

// Authority is an authority as the admin API shows it.
type Authority struct {
	Name       string   `json:"name"`
	Root       string   `json:"root"`
	AddedRoots []string `json:"added_roots,omitempty"`
	RootKeyURI string   `json:"root_key_uri,omitempty"`
	BaseURL    string   `json:"base_url,omitempty"`
	RootID     string   `json:"root_id,omitempty"`
	CRL        struct {
		Validity string `json:"validity"`
		Refresh  string `json:"refresh"`
		Shards   int    `json:"shards,omitempty"`
	} `json:"crl"`
	Issuers   []Issuer  `json:"issuers"`
	CreatedAt time.Time `json:"created_at"`
}

// Issuer is one intermediate of an authority.
type Issuer struct {
	ID          string     `json:"id"`
	KeyURI      string     `json:"key_uri"`
	Active      bool       `json:"active"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Certificate string     `json:"certificate"`
	NotAfter    time.Time  `json:"not_after"`
	CRLShards   int        `json:"crl_shards,omitempty"` // its CRL's partitions, at .../crl/{0..n-1}
}

// KeyOptions names a key URI, or asks for keys to be created first.
type KeyOptions struct {
	Key          string `json:"key"`
	CreateKeys   bool   `json:"create_keys,omitempty"`
	KeyAlgorithm string `json:"key_algorithm,omitempty"`
}

// CreateAuthority is the body of an authority creation with a KMS/HSM root.
type CreateAuthority struct {
	Name           string `json:"name"`
	RootKey        string `json:"root_key"`
	RootCommonName string `json:"root_common_name,omitempty"`
	CommonName     string `json:"common_name,omitempty"`
	RootTTL        string `json:"root_ttl,omitempty"`
	TTL            string `json:"ttl,omitempty"`
	BaseURL        string `json:"base_url,omitempty"`
	KeyOptions
}

// ImportAuthority installs an intermediate signed by an offline root.
type ImportAuthority struct {
	Name       string `json:"name"`
	Root       string `json:"root"`
	Chain      string `json:"chain"`
	Key        string `json:"key"`
	BaseURL    string `json:"base_url,omitempty"`
	KeepOthers bool   `json:"keep_others,omitempty"`
	NewRoot    bool   `json:"new_root,omitempty"` // a root rotation: the root joins the authority's anchors
}

// RotateAuthority asks for a new intermediate signed by the root key.
type RotateAuthority struct {
	CommonName string `json:"common_name,omitempty"`
	TTL        string `json:"ttl,omitempty"`
	KeepOthers bool   `json:"keep_others,omitempty"`
	KeyOptions
}

// CSR is a certificate request for an issuing key.
type CSR struct {
	CSR string `json:"csr"`
	Key string `json:"key"`
}

func (c *Client) CreateAuthority(ctx context.Context, req CreateAuthority) (*Authority, error) {
	var a Authority
	return &a, c.Do(ctx, "POST", "/v1/admin/authorities", req, &a)

}

func (c *Client) AuthorityCSR(ctx context.Context, key KeyOptions, commonName string) (*CSR, error) {
	var out CSR
	in := struct {
		CommonName string `json:"common_name,omitempty"`
		KeyOptions
	}{commonName, key}
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

// UpdateAuthority changes an authority's settings; nil fields stay.
type UpdateAuthority struct {
	RootKey *string    `json:"root_key,omitempty"`
	BaseURL *string    `json:"base_url,omitempty"`
	CRL     *CRLConfig `json:"crl,omitempty"`
}

// CRLConfig dates an authority's CRLs: durations such as "24h"; "" is the
// default.
type CRLConfig struct {
	Validity string `json:"validity,omitempty"`
	Refresh  string `json:"refresh,omitempty"`
	// Shards partitions the CRLs of issuers that have one CRL, and of
	// issuers made later; nil: as it is.
	Shards *int `json:"shards,omitempty"`
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

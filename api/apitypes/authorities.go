package apitypes

import "time"

// Authority is an authority as the admin API shows it.
type Authority struct {
	Name       string      `json:"name"`
	Root       string      `json:"root"`
	AddedRoots []string    `json:"added_roots,omitempty"` // root rotations
	RootKeyURI string      `json:"root_key_uri,omitempty"`
	BaseURL    string      `json:"base_url,omitempty"`
	RootID     string      `json:"root_id"` // its CRL: /v1/authorities/{name}/roots/{root_id}/crl
	CRL        CRLSettings `json:"crl"`
	Issuers    []Issuer    `json:"issuers"`
	CreatedAt  time.Time   `json:"created_at"`
}

// CRLSettings are the validity and refresh period an authority's CRLs
// have, as durations such as "24h0m0s", and the shards issuers take.
type CRLSettings struct {
	Validity string `json:"validity"`
	Refresh  string `json:"refresh"`
	Shards   int    `json:"shards,omitempty"` // for issuers that take them from now on
}

// Issuer is one intermediate of an authority.
type Issuer struct {
	ID          string     `json:"id"`
	KeyURI      string     `json:"key_uri"`
	Active      bool       `json:"active"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Certificate string     `json:"certificate"`
	NotAfter    time.Time  `json:"not_after"`
	// CRLShards: its CRL's partitions, at .../issuers/{id}/crl/{0..n-1}.
	CRLShards int `json:"crl_shards,omitempty"`
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

// UpdateAuthority changes an authority's settings; nil fields stay.
type UpdateAuthority struct {
	RootKey *string    `json:"root_key,omitempty"`
	BaseURL *string    `json:"base_url,omitempty"`
	CRL     *CRLConfig `json:"crl,omitempty"`
}

// CRLConfig dates an authority's CRLs: durations such as "24h"; "" is the
// default. Shards partitions the CRLs of issuers that have one CRL, and of
// issuers made later; nil: as it is.
type CRLConfig struct {
	Validity string `json:"validity,omitempty"`
	Refresh  string `json:"refresh,omitempty"`
	Shards   *int   `json:"shards,omitempty"`
}

// CSRRequest asks for a certificate request for an issuing key, for an
// offline root to sign.
type CSRRequest struct {
	CommonName string `json:"common_name,omitempty"`
	KeyOptions
}

// CSR is a certificate request (PEM) for an issuing key, and the key's URI.
type CSR struct {
	CSR string `json:"csr"`
	Key string `json:"key"`
}

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

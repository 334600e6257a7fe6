package fsm

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/quorumca/quorumca/internal/errs"
)

// Authority is a CA that issues certificates: a root and one or more
// issuing intermediates, each with a reference to its signing key. Key
// material never enters the FSM.
type Authority struct {
	Name string `json:"name"`
	Root []byte `json:"root"` // DER of the trust anchor
	// AddedRoots are further trust anchors, added by a root rotation (an
	// issuer imported under a new root). Root stays first.
	AddedRoots [][]byte `json:"added_roots,omitempty"`
	// RootKeyURI is set when the root's key is in a KMS or HSM: rotation can
	// then sign new intermediates. Empty for an offline root.
	RootKeyURI string   `json:"root_key_uri,omitempty"`
	Issuers    []Issuer `json:"issuers"`
	// BaseURL is the plain-HTTP address (a load balancer, usually) that
	// issued certificates name for CRL and OCSP; empty: they name none.
	BaseURL   string    `json:"base_url,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// CRL is how the authority's CRLs are dated; zero: the defaults.
	CRL CRLSettings `json:"crl,omitzero"`
}

// CRLSettings say how long a CRL is valid (nextUpdate - thisUpdate), how
// often it is signed anew when nothing changed, and into how many shards
// an issuer's CRL is partitioned (0 or 1: one CRL). Shards reach an
// issuer once, for its life (Issuer.CRLShards).
type CRLSettings struct {
	Validity time.Duration `json:"validity,omitempty"`
	Refresh  time.Duration `json:"refresh,omitempty"`
	Shards   int           `json:"shards,omitempty"`
}

// RootCRLPrefix starts the issuer ID under which a root's CRL is kept: the
// prefix and the root's ID. Issuer IDs are hex, so the two never meet.
const RootCRLPrefix = "root-"

// MaxCRLShards is the most shards an issuer's CRL is partitioned into:
// each shard is signed once per refresh period, idle or not, and every
// node lists an issuer's CRLs one by one (the leader each CRL interval,
// the bundle at each request).
const MaxCRLShards = 1024

// CRLShardID names shard k of an issuer's partitioned CRL among an
// authority's CRLs (stored CRLs, stale marks, the revoked index): the
// issuer's ID, "/" and k. Issuer IDs are hex, so the two never meet.
func CRLShardID(issuer string, k int) string { return issuer + "/" + strconv.Itoa(k) }

// SplitCRLID splits a CRL's ID into its issuer's ID and shard; shard -1
// is the complete CRL (or a root's).
func SplitCRLID(id string) (issuer string, shard int) {
	iss, k, ok := strings.Cut(id, "/")
	if !ok {
		return id, -1
	}
	n, err := strconv.Atoi(k)
	if err != nil || n < 0 || strconv.Itoa(n) != k {
		return id, -1
	}
	return iss, n
}

// CRLShard is the shard that lists the certificate with this serial (hex)
// in a CRL of n shards: the serial modulo n. Serials are random, so the
// shards fill evenly.
func CRLShard(serial string, n int) int {
	s, ok := new(big.Int).SetString(serial, 16)
	if !ok || n < 2 {
		return 0
	}
	return int(s.Mod(s, big.NewInt(int64(n))).Int64())
}

// pinCRLShards partitions the CRL of each active issuer that has no
// shards yet, once the authority asks for shards and has a base URL for
// their URLs. Retired issuers keep one CRL: they issue nothing that would
// name a shard.
func pinCRLShards(a *Authority) {
	if a.CRL.Shards < 2 || a.CRL.Shards > MaxCRLShards || a.BaseURL == "" {
		return
	}
	for i := range a.Issuers {
		if iss := &a.Issuers[i]; iss.Active && iss.CRLShards == 0 {
			iss.CRLShards, iss.CRLBaseURL = a.CRL.Shards, a.BaseURL
		}
	}
}

// checkCRLLayout refuses what a node may have written but no node should
// apply: a shard count out of bounds, or an issuer ID that names another
// CRL (a shard's "id/k", a root's RootCRLPrefix). Issuer IDs are hex.
func checkCRLLayout(a *Authority, issuers ...Issuer) *errs.Error {
	if a.CRL.Shards < 0 || a.CRL.Shards > MaxCRLShards {
		return reject(ErrMalformed, fmt.Sprintf("authority %s: crl shards %d, not between 0 and %d", a.Name, a.CRL.Shards, MaxCRLShards))
	}
	for _, iss := range issuers {
		if iss.ID == "" || strings.Contains(iss.ID, "/") || strings.HasPrefix(iss.ID, RootCRLPrefix) {
			return reject(ErrMalformed, fmt.Sprintf("authority %s: issuer ID %q names no issuer", a.Name, iss.ID))
		}
	}
	return nil
}

// Roots are the authority's trust anchors: Root, then any added ones.
func (a *Authority) Roots() [][]byte { return append([][]byte{a.Root}, a.AddedRoots...) }

// Issuer is one intermediate of an authority. Active issuers share new
// issuance (several KMS keys multiply the signing quota); a retired one
// still signs the CRL and OCSP answers for what it issued.
type Issuer struct {
	ID        string    `json:"id"`    // stable: derived from the key
	Chain     [][]byte  `json:"chain"` // DER, this issuer's certificate first, root excluded
	KeyURI    string    `json:"key_uri"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	// RevokedAt is set once the issuer's certificate is revoked (its root
	// CRL lists it); it issues nothing more.
	RevokedAt        time.Time `json:"revoked_at,omitzero"`
	RevocationReason int       `json:"revocation_reason,omitempty"`
	// CRLShards (over 1) partitions the issuer's CRL: a certificate is
	// listed in shard CRLShard(serial, CRLShards) as well as in the
	// complete CRL, and names that shard's URL under CRLBaseURL. Both are
	// set once (pinCRLShards) and never change: certificates name the
	// URL, and each shard's issuing distribution point must match it.
	CRLShards  int    `json:"crl_shards,omitempty"`
	CRLBaseURL string `json:"crl_base_url,omitempty"`
}

// Revoked reports whether the issuer's certificate is revoked.
func (i *Issuer) Revoked() bool { return !i.RevokedAt.IsZero() }

// Issuer returns the issuer with the given ID, or nil.
func (a *Authority) Issuer(id string) *Issuer {
	for i := range a.Issuers {
		if a.Issuers[i].ID == id {
			return &a.Issuers[i]
		}
	}
	return nil
}

// ActiveIssuers are the issuers that take new issuance, newest first.
func (a *Authority) ActiveIssuers() []*Issuer {
	var out []*Issuer
	for i := len(a.Issuers) - 1; i >= 0; i-- {
		if a.Issuers[i].Active {
			out = append(out, &a.Issuers[i])
		}
	}
	return out
}

// Cert is the record of one issued certificate.
type Cert struct {
	Serial      string            `json:"serial"` // lowercase hex, no leading zeros
	Authority   string            `json:"authority"`
	Issuer      string            `json:"issuer"` // ID of the authority's issuer that signed it
	Subject     string            `json:"subject"`
	SANs        []string          `json:"sans"`
	NotBefore   time.Time         `json:"not_before"`
	NotAfter    time.Time         `json:"not_after"`
	TokenID     string            `json:"token_id,omitempty"`
	Provisioner string            `json:"provisioner,omitempty"`
	Properties  map[string]string `json:"properties,omitempty"` // copied from the token
	Requester   string            `json:"requester"`
	RenewedFrom string            `json:"renewed_from,omitempty"` // serial this one renews
	IssuedAt    time.Time         `json:"issued_at"`              // leader's clock at commit, set by Apply
	DER         []byte            `json:"der"`
	// Set by Apply of a renewal (CmdRenew): RenewedBy on the renewed
	// certificate names its one successor; Lineage on the successor is the
	// serial of the first certificate of the chain of renewals (empty on a
	// first issue: the certificate's own serial).
	RenewedBy string `json:"renewed_by,omitempty"`
	Lineage   string `json:"lineage,omitempty"`

	RevokedAt        time.Time `json:"revoked_at,omitzero"`
	RevocationReason int       `json:"revocation_reason,omitempty"` // RFC 5280 CRLReason
	RevokedBy        string    `json:"revoked_by,omitempty"`
}

// Revoked reports whether the certificate has been revoked.
func (c *Cert) Revoked() bool { return !c.RevokedAt.IsZero() }

// LineageID names the chain of renewals the certificate belongs to: the
// serial of its first issue. Limits per certificate lineage key on it.
func (c *Cert) LineageID() string {
	if c.Lineage != "" {
		return c.Lineage
	}
	return c.Serial
}

// Token is a single-use enrollment token. Only the SHA-256 of the secret is
// stored; the secret is shown once to the admin who minted it.
type Token struct {
	ID          string            `json:"id"`
	Hash        []byte            `json:"hash"`
	Provisioner string            `json:"provisioner,omitempty"`
	SANs        []string          `json:"sans"`
	Properties  map[string]string `json:"properties,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	ExpiresAt   time.Time         `json:"expires_at"`
	CreatedBy   string            `json:"created_by,omitempty"`
	UsedAt      time.Time         `json:"used_at,omitzero"`
	UsedBy      string            `json:"used_by,omitempty"` // serial of the certificate
	RevokedAt   time.Time         `json:"revoked_at,omitzero"`
}

// outstanding reports whether a token can still be used at t.
func (t *Token) outstanding(at time.Time) bool {
	return t.UsedBy == "" && t.RevokedAt.IsZero() && at.Before(t.ExpiresAt)
}

// Outstanding reports whether a token can still be used at t.
func (t *Token) Outstanding(at time.Time) bool { return t.outstanding(at) }

// Admin is an admin credential: a bearer token, stored as its hash, or a
// client certificate from the "admin" authority, stored by the serial of
// its current certificate (a renewal moves it to the successor's).
type Admin struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Role       string    `json:"role"`
	Hash       []byte    `json:"hash,omitempty"`
	CertSerial string    `json:"cert_serial,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"` // zero: no expiry
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	// Recovery marks a break-glass token (admin_create version 3): short
	// lived, and used up by the one admin it creates.
	Recovery bool `json:"recovery,omitempty"`
}

// UsableMargin: an admin credential that expires sooner than this does not
// count as usable; nobody should find out at expiry that none is left.
const UsableMargin = 24 * time.Hour

// Usable reports whether the credential is active at t and stays so for
// UsableMargin: what the last-admin guard counts.
func (a *Admin) Usable(t time.Time) bool {
	return a.RevokedAt.IsZero() && !a.Recovery && (a.ExpiresAt.IsZero() || t.Add(UsableMargin).Before(a.ExpiresAt))
}

// key is where the admin is stored: by token hash or by certificate.
func (a *Admin) key() []byte {
	if len(a.Hash) > 0 {
		return a.Hash
	}
	return []byte("cert:" + a.CertSerial)
}

// Active reports whether the credential may be used at t.
func (a *Admin) Active(t time.Time) bool {
	return a.RevokedAt.IsZero() && (a.ExpiresAt.IsZero() || t.Before(a.ExpiresAt))
}

// Node is a cluster member's addresses, so any node can reach the leader's API.
type Node struct {
	ID       string `json:"id"`
	APIAddr  string `json:"api_addr"` // host:port of the HTTPS API
	RaftAddr string `json:"raft_addr"`
	// LogFormat is the newest log format the node reads, as it announced
	// itself (0 for releases before the field): the leader counts a server
	// that does not answer as this.
	LogFormat int `json:"log_format,omitempty"`
	// RemovedAt is when an operator removed the node from the cluster:
	// every node certificate for its id issued before then is void
	// (cluster/nodetls.go), so a removed node cannot come back on the
	// credentials it had. AnnouncedAt is when the node last announced
	// itself, which takes a valid certificate: after RemovedAt, it came
	// back with a fresh one. Both are the leader's clock.
	RemovedAt   time.Time `json:"removed_at,omitzero"`
	AnnouncedAt time.Time `json:"announced_at,omitzero"`
}

// Rejoined reports whether a removed node has announced itself since.
func (n *Node) Rejoined() bool { return n.RemovedAt.IsZero() || n.AnnouncedAt.After(n.RemovedAt) }

// Provisioner kinds.
const (
	KindEnrollmentToken = "enrollment-token"
	KindJWK             = "jwk"
	// KindServer issues the servers' own API certificates, to nodes only
	// (never through a token or a renewal by the holder); its names are
	// reserved: no other provisioner issues them.
	KindServer = "server"
	// KindX5C enrolls devices by the factory certificate (IEEE 802.1AR
	// IDevID) they present in the TLS handshake, once per device.
	KindX5C = "x5c"
)

// Provisioner decides who may get which certificate from one authority.
type Provisioner struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	Authority string          `json:"authority"`
	Policy    Policy          `json:"policy"`
	JWK       json.RawMessage `json:"jwk,omitempty"`  // public key, kind jwk
	ACME      *ACMEOptions    `json:"acme,omitempty"` // kind acme
	X5C       *X5COptions     `json:"x5c,omitempty"`  // kind x5c
	Version   uint64          `json:"version"`        // bumped by every change
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// X5COptions are an x5c provisioner's: whose factory certificates it
// trusts and what a device gets. The FSM reads AllowList and Reprovision.
type X5COptions struct {
	// Roots: the manufacturers' CA certificates, PEM.
	Roots string `json:"roots"`
	// DeviceID names the factory certificate's subject attribute that
	// identifies a device: "serial" (serialNumber, as IEEE 802.1AR has
	// it; the default) or "cn".
	DeviceID string `json:"device_id,omitempty"`
	// Names are the certificate's names, templates over the factory
	// certificate's subject: {serial}, {cn}, {id} (the device ID).
	Names []string `json:"names"`
	// AllowList: only devices an admin listed enroll.
	AllowList bool `json:"allow_list,omitempty"`
	// Reprovision: a device may enroll again (a factory reset); without
	// it, once.
	Reprovision bool `json:"reprovision,omitempty"`
}

// Policy is what a provisioner allows. The authority package interprets it;
// the FSM itself only reads RenewGrace.
type Policy struct {
	DNS        []string      `json:"dns,omitempty"`         // "*", "a.example", "*.example" (one label), ".example" (any depth)
	IP         []string      `json:"ip,omitempty"`          // CIDRs
	URI        []string      `json:"uri,omitempty"`         // "**", or scheme://host[:port][/path]: host as in DNS, * within a path segment, ** across
	Email      []string      `json:"email,omitempty"`       // "*", "@example.com", "a@example.com"
	CommonName []string      `json:"common_name,omitempty"` // globs; empty: the CN must be one of the SANs
	DefaultTTL time.Duration `json:"default_ttl"`
	MaxTTL     time.Duration `json:"max_ttl"`
	KeyTypes   []string      `json:"key_types,omitempty"` // P-256, P-384, P-521, Ed25519, RSA; empty: all but P-521
	RSAMinBits int           `json:"rsa_min_bits,omitempty"`
	EKU        string        `json:"eku,omitempty"` // server, client, both (default)
	// RenewGrace is how long after expiry a certificate may still be
	// renewed; zero: not at all.
	RenewGrace time.Duration `json:"renew_grace,omitempty"`
	// AllowWildcard permits wildcard names ("*.example") that the DNS
	// patterns cover; without it no pattern allows one. Records from
	// before it decode as false.
	AllowWildcard bool `json:"allow_wildcard,omitempty"`
	// RevokeOnRenew revokes (reason superseded) a certificate in the same
	// entry that stores its successor, so whoever still holds the old one
	// loses it at the renewal. The proposer copies it into CmdRenew.
	RevokeOnRenew bool `json:"revoke_on_renew,omitempty"`
	// ServerKeygen lets EST clients of an enrollment-token provisioner ask
	// the CA to make their key (serverkeygen): it is returned once, with
	// the certificate, and never stored.
	ServerKeygen bool `json:"server_keygen,omitempty"`
}

// CRL is the current signed revocation list of one issuer.
type CRL struct {
	Authority  string    `json:"authority"`
	Issuer     string    `json:"issuer"`
	Number     uint64    `json:"number"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
	DER        []byte    `json:"der"`
}

package fsm

import "time"

// Authority is a CA that issues certificates: its chain and a reference to
// its signing key. Key material never enters the FSM.
type Authority struct {
	Name       string        `json:"name"`
	Root       []byte        `json:"root"`  // DER of the trust anchor
	Chain      [][]byte      `json:"chain"` // DER, issuing certificate first, root excluded
	KeyURI     string        `json:"key_uri"`
	DefaultTTL time.Duration `json:"default_ttl"`
	MaxTTL     time.Duration `json:"max_ttl"`
	CreatedAt  time.Time     `json:"created_at"`
}

// Cert is the record of one issued certificate.
type Cert struct {
	Serial    string    `json:"serial"` // lowercase hex, no leading zeros
	Authority string    `json:"authority"`
	Subject   string    `json:"subject"`
	SANs      []string  `json:"sans"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	TokenID   string    `json:"token_id,omitempty"`
	Requester string    `json:"requester"`
	IssuedAt  time.Time `json:"issued_at"` // leader's clock at commit, set by Apply
	DER       []byte    `json:"der"`
}

// Token is a single-use enrollment token. Only the SHA-256 of the secret is
// stored; the secret is shown once to the admin who minted it.
type Token struct {
	ID         string            `json:"id"`
	Hash       []byte            `json:"hash"`
	SANs       []string          `json:"sans"`
	Properties map[string]string `json:"properties,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	ExpiresAt  time.Time         `json:"expires_at"`
	CreatedBy  string            `json:"created_by,omitempty"`
	UsedAt     time.Time         `json:"used_at,omitzero"`
	UsedBy     string            `json:"used_by,omitempty"` // serial of the certificate
}

// Admin is an admin API credential, stored as the hash of its bearer token.
type Admin struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Hash      []byte    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"` // zero: no expiry
}

// Node is a cluster member's addresses, so any node can reach the leader's API.
type Node struct {
	ID       string `json:"id"`
	APIAddr  string `json:"api_addr"` // host:port of the HTTPS API
	RaftAddr string `json:"raft_addr"`
}

package apitypes

import (
	"encoding/json"
	"time"
)

// Provisioner is a provisioner document of the admin API: durations as
// strings ("24h"), the policy under "policy".
type Provisioner struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	Authority string          `json:"authority"`
	Policy    Policy          `json:"policy"`
	JWK       json.RawMessage `json:"jwk,omitempty"`
	ACME      *ACMEOptions    `json:"acme,omitempty"` // kind acme
	X5C       *X5COptions     `json:"x5c,omitempty"`  // kind x5c
	Version   uint64          `json:"version"`
	CreatedAt time.Time       `json:"created_at,omitzero"`
	UpdatedAt time.Time       `json:"updated_at,omitzero"`
}

// X5COptions are an x5c provisioner's: the manufacturers' CA certificates
// (PEM), the subject attribute that is the device ID ("serial", the
// default, or "cn"), the certificate's names as templates ({serial},
// {cn}, {id}), whether only listed devices enroll, and whether a device
// may enroll more than once.
type X5COptions struct {
	Roots       string   `json:"roots"`
	DeviceID    string   `json:"device_id,omitempty"`
	Names       []string `json:"names"`
	AllowList   bool     `json:"allow_list,omitempty"`
	Reprovision bool     `json:"reprovision,omitempty"`
}

// Device is a device of an x5c provisioner: listed on its allow-list or
// seen enrolling, with the last certificate it enrolled for.
type Device struct {
	ID          string    `json:"id"`
	Listed      bool      `json:"listed"`
	ListedAt    time.Time `json:"listed_at,omitzero"`
	Revoked     bool      `json:"revoked"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	Serial      string    `json:"serial,omitempty"`
	EnrolledAt  time.Time `json:"enrolled_at,omitzero"`
	Enrollments int       `json:"enrollments"`
}

// DevicesRequest lists devices on an allow-list.
type DevicesRequest struct {
	IDs []string `json:"ids"`
}

// ACMEOptions are an acme provisioner's settings: new accounts need an
// external account binding; the challenge types offered (default all).
type ACMEOptions struct {
	RequireEAB bool     `json:"require_eab,omitempty"`
	Challenges []string `json:"challenges,omitempty"`
}

// Policy is what a provisioner allows; durations are strings ("24h").
type Policy struct {
	DNS        []string `json:"dns,omitempty"`
	IP         []string `json:"ip,omitempty"`
	URI        []string `json:"uri,omitempty"`
	Email      []string `json:"email,omitempty"`
	CommonName []string `json:"common_name,omitempty"`
	DefaultTTL string   `json:"default_ttl,omitempty"`
	MaxTTL     string   `json:"max_ttl,omitempty"`
	KeyTypes   []string `json:"key_types,omitempty"`
	RSAMinBits int      `json:"rsa_min_bits,omitempty"`
	EKU        string   `json:"eku,omitempty"`
	// ServerKeygen: EST clients may have the CA make their keys.
	ServerKeygen bool   `json:"server_keygen,omitempty"`
	RenewGrace   string `json:"renew_grace,omitempty"`
	// AllowWildcard permits wildcard names ("*.example") that DNS covers.
	AllowWildcard bool `json:"allow_wildcard,omitempty"`
	// RevokeOnRenew: a renewal revokes the certificate it replaces.
	RevokeOnRenew bool `json:"revoke_on_renew,omitempty"`
}

// TokenRequest mints enrollment tokens: one, or Count of them.
type TokenRequest struct {
	SANs        []string          `json:"sans"`
	TTL         string            `json:"ttl,omitempty"`
	Provisioner string            `json:"provisioner,omitempty"`
	Properties  map[string]string `json:"properties,omitempty"`
	Count       int               `json:"count,omitempty"`
}

// Admin is an admin credential (never its secret).
type Admin struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Role       string    `json:"role"`
	Kind       string    `json:"kind"` // token or certificate
	CertSerial string    `json:"cert_serial,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
	Recovery   bool      `json:"recovery,omitempty"` // a break-glass credential
}

// AdminRequest creates an admin credential: a token, or with a CSR (PEM) a
// client certificate.
type AdminRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	TTL  string `json:"ttl,omitempty"`
	CSR  string `json:"csr,omitempty"`
}

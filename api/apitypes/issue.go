package apitypes

import "time"

// SignRequest trades a single-use token and a CSR for a certificate.
type SignRequest struct {
	CSR   string `json:"csr"`
	Token string `json:"token,omitempty"`
	// Provisioner, without a token: an x5c provisioner, the request
	// authenticated by the device's factory certificate in the TLS
	// handshake.
	Provisioner string `json:"provisioner,omitempty"`
	TTL         string `json:"ttl,omitempty"`
}

// RenewRequest asks for a successor to the certificate that authenticates
// the request.
type RenewRequest struct {
	CSR string `json:"csr,omitempty"` // optional: a new key, same names
}

// Signed is an issued certificate: the reply to a sign or a renewal.
type Signed struct {
	Serial      string    `json:"serial"`
	Certificate string    `json:"certificate"` // PEM
	Chain       []string  `json:"chain"`       // PEM, issuing certificate first
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	RenewedFrom string    `json:"renewed_from,omitempty"`
}

// Cert is a certificate record.
type Cert struct {
	Serial      string            `json:"serial"`
	Subject     string            `json:"subject"`
	SANs        []string          `json:"sans"`
	NotBefore   time.Time         `json:"not_before"`
	NotAfter    time.Time         `json:"not_after"`
	Authority   string            `json:"authority"`
	TokenID     string            `json:"token_id,omitempty"`
	Provisioner string            `json:"provisioner,omitempty"`
	Properties  map[string]string `json:"properties,omitempty"`
	Requester   string            `json:"requester"`
	RenewedFrom string            `json:"renewed_from,omitempty"`
	IssuedAt    time.Time         `json:"issued_at"`
	Status      string            `json:"status"` // valid, revoked or expired
	RevokedAt   *time.Time        `json:"revoked_at,omitempty"`
	Reason      string            `json:"revocation_reason,omitempty"`
	Certificate string            `json:"certificate"`
	Chain       []string          `json:"chain"`
}

// RenewalInfo is when to renew a certificate (RFC 9773 section 4.2): at a
// time picked at random in the window. Reason says why the window was
// moved to now (a revocation, an issuer rotation), if it was.
type RenewalInfo struct {
	SuggestedWindow struct {
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	} `json:"suggestedWindow"`
	Reason string `json:"reason,omitempty"`
}

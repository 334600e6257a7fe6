package authority

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/quorumca/quorumca/fsm"
)

// NormalizeSerial accepts a serial as hex, with or without colons and
// leading zeros, and returns the canonical form records are keyed by.
func NormalizeSerial(s string) (string, error) {
	h := strings.ReplaceAll(s, ":", "")
	if h == "" || len(h) > 64 {
		return "", fmt.Errorf("%w: serial must be 1-64 hex digits", ErrInvalidRequest)
	}
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || n.Sign() <= 0 {
		return "", fmt.Errorf("%w: serial %q is not a positive hex number", ErrInvalidRequest, truncate(s))
	}
	return SerialHex(n), nil
}

// Cert returns the record of an issued certificate from any node.
func (ca *CA) Cert(ctx context.Context, serial string) (*fsm.Cert, error) {
	s, err := NormalizeSerial(serial)
	if err != nil {
		return nil, err
	}
	// A record carries revocation status: read it only once caught up.
	if err := ca.CaughtUp(ctx); err != nil {
		return nil, err
	}
	c, err := ca.state.Cert(s)
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, fmt.Errorf("%w: no certificate with serial %s", ErrNotFound, s)
	}
	return c, err
}

// Chain returns the chain of the issuer that signed c.
func (ca *CA) Chain(c *fsm.Cert) [][]byte {
	_, iss, err := ca.issuer(c.Authority, c.Issuer)
	if err != nil {
		return nil
	}
	return iss.Chain
}

// SearchCerts lists certificate records matching q, from the indexes.
func (ca *CA) SearchCerts(ctx context.Context, q fsm.CertQuery) ([]*fsm.Cert, []byte, error) {
	switch q.Status {
	case "", "valid", "revoked", "expired":
	default:
		return nil, nil, fmt.Errorf("%w: status: want valid, revoked or expired", ErrInvalidRequest)
	}
	if q.Property != "" && !strings.Contains(q.Property, "=") {
		return nil, nil, fmt.Errorf("%w: property: want key=value", ErrInvalidRequest)
	}
	if id, ok := strings.CutPrefix(q.Property, fsm.DeviceProperty+"="); ok {
		q.Property = fsm.DeviceProperty + "=" + strings.ToLower(id) // device IDs are case-insensitive, kept lowercase
	}
	if q.SAN != "" {
		c, err := normalizeName(q.SAN)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: san: %v", ErrInvalidRequest, err)
		}
		q.SAN = c
	}
	if err := ca.raft.Barrier(ctx); err != nil {
		return nil, nil, err
	}
	q.Now = ca.now()
	return ca.state.SearchCerts(q)
}

// Audit reads one page of audit entries after a sequence number.
func (ca *CA) Audit(ctx context.Context, q fsm.AuditFilter) (fsm.AuditPage, error) {
	return ca.state.Audit(q)
}

// AuditHead is the sequence number and hash of the newest audit entry.
func (ca *CA) AuditHead() (uint64, string) { return ca.state.AuditHead() }

// AppliedIndex is the newest log index in this node's state.
func (ca *CA) AppliedIndex() uint64 { return ca.state.AppliedIndex() }

// WaitForChange blocks until the local state moves past log index since,
// or ctx ends: for following the audit log.
func (ca *CA) WaitForChange(ctx context.Context, since uint64) error {
	return ca.state.WaitApplied(ctx, since+1)
}

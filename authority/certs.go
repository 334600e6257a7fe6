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
	c, err := lookup(ctx, ca, func() (*fsm.Cert, error) { return ca.state.Cert(s) })
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

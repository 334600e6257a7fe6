package acme

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"time"

	"github.com/quorumca/quorumca/internal/errs"
	"math/big"
	"strings"

	"github.com/quorumca/quorumca/authority"
)

// RenewalInfo answers a certificate's suggested renewal window (RFC 9773
// section 4), for a GET without a JWS: the certificate id is its name.
func (s *Service) RenewalInfo(ctx context.Context, c *Call) (*Response, error) {
	serial, aki, err := parseCertID(c.ID)
	if err != nil {
		return nil, err
	}
	win, rec, err := s.ca.RenewalInfo(ctx, serial)
	if err != nil {
		if e := errs.Of(err); e != nil && e.Kind == errs.NotFound {
			return nil, notFound("certificate", c.ID)
		}
		return nil, err
	}
	leaf, err := x509.ParseCertificate(rec.DER)
	if err != nil || !bytes.Equal(leaf.AuthorityKeyId, aki) || rec.Provisioner != c.Provisioner.Name {
		// The serial of another issuer, or a certificate this directory
		// did not issue.
		return nil, notFound("certificate", c.ID)
	}
	var body struct {
		SuggestedWindow struct {
			Start time.Time `json:"start"`
			End   time.Time `json:"end"`
		} `json:"suggestedWindow"`
	}
	body.SuggestedWindow.Start, body.SuggestedWindow.End = win.Start.UTC(), win.End.UTC()
	return &Response{Body: body, RetryAfter: win.RetryAfter}, nil
}

// SerialOfCertID reads the serial out of an RFC 9773 certificate id:
// base64url of the issuer's key identifier, ".", base64url of the serial's
// DER integer bytes.
func SerialOfCertID(id string) (string, error) {
	serial, _, err := parseCertID(id)
	return serial, err
}

func parseCertID(id string) (string, []byte, error) {
	aki64, serial, ok := strings.Cut(id, ".")
	if !ok || len(id) > 256 {
		return "", nil, malformed("certificate id %q is not keyIdentifier.serial", truncate(id))
	}
	aki, err := base64.RawURLEncoding.DecodeString(aki64)
	if err != nil || len(aki) == 0 {
		return "", nil, malformed("certificate id: the key identifier is not base64url")
	}
	b, err := base64.RawURLEncoding.DecodeString(serial)
	if err != nil || len(b) == 0 || len(b) > 21 {
		return "", nil, malformed("certificate id: the serial is not base64url of 1-21 bytes")
	}
	return authority.SerialHex(new(big.Int).SetBytes(b)), aki, nil
}

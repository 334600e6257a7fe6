package acme

import (
	"encoding/base64"
	"math/big"
	"strings"

	"github.com/quorumca/quorumca/authority"
)

// SerialOfCertID reads the serial out of an RFC 9773 certificate id:
// base64url of the issuer's key identifier, ".", base64url of the serial's
// DER integer bytes.
func SerialOfCertID(id string) (string, error) {
	aki, serial, ok := strings.Cut(id, ".")
	if !ok || len(id) > 256 {
		return "", malformed("certificate id %q is not keyIdentifier.serial", truncate(id))
	}
	if _, err := base64.RawURLEncoding.DecodeString(aki); err != nil {
		return "", malformed("certificate id: the key identifier is not base64url")
	}
	b, err := base64.RawURLEncoding.DecodeString(serial)
	if err != nil || len(b) == 0 || len(b) > 21 {
		return "", malformed("certificate id: the serial is not base64url of 1-21 bytes")
	}
	return authority.SerialHex(new(big.Int).SetBytes(b)), nil
}

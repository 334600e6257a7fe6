//go:build !pkcs11 || !cgo

package pkcs11

import (
	"context"
	"errors"

	"github.com/quorumca/quorumca/signer"
)

// Compiled is false in this build: PKCS#11 needs cgo.
const Compiled = false

var errNotCompiled = errors.New("pkcs11: this quorumca build has no PKCS#11 support; use the cgo build (make build-pkcs11, tag pkcs11)")

func init() {
	signer.Register(Scheme, func(_ context.Context, uri string, _ signer.Options) (signer.Key, error) {
		if _, err := parseURI(uri); err != nil {
			return nil, err
		}
		return nil, errNotCompiled
	}, nil, false)
}

//go:build pkcs11 && cgo

package signer_test

import (
	"testing"

	"github.com/quorumca/quorumca/signer"
	_ "github.com/quorumca/quorumca/signer/pkcs11"
	"github.com/quorumca/quorumca/signer/pkcs11/hsmtest"
)

func BenchmarkSignPKCS11(b *testing.B) {
	tok := hsmtest.New(b, "bench")
	c := &signer.Cache{Options: benchOptions}
	defer c.Close()
	benchSign(b, newBenchKey(b, c, tok.KeyURI("k")))
}

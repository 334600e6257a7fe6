// Package hsmtest makes a SoftHSM2 token in a test directory, for tests of
// the PKCS#11 signer and of clusters whose keys live in an HSM.
package hsmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// ModulePaths are where Debian's softhsm2 puts its PKCS#11 module.
var ModulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
}

// Token is an initialized SoftHSM2 token.
type Token struct {
	Module  string
	Label   string
	PINFile string
	Dir     string // the token directory; copy it to give another node the same keys
	Conf    string // the SOFTHSM2_CONF file pointing at Dir
}

// New initializes a token in a fresh directory and points SOFTHSM2_CONF at
// it for the rest of the test. It fails the test if SoftHSM2 is missing.
func New(t testing.TB, label string) *Token {
	t.Helper()
	module := ""
	for _, p := range ModulePaths {
		if _, err := os.Stat(p); err == nil {
			module = p
			break
		}
	}
	if _, err := exec.LookPath("softhsm2-util"); err != nil || module == "" {
		t.Fatal("SoftHSM2 is required by this test and is not installed (Debian: apt-get install softhsm2)")
	}
	dir := t.TempDir()
	tok := &Token{Module: module, Label: label, Dir: filepath.Join(dir, "tokens"),
		PINFile: filepath.Join(dir, "pin"), Conf: filepath.Join(dir, "softhsm2.conf")}
	if err := os.MkdirAll(tok.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tok.Dir)
	if err := os.WriteFile(tok.Conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tok.PINFile, []byte("5678\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", tok.Conf)
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label,
		"--so-pin", "1234", "--pin", "5678").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return tok
}

// KeyURI is the pkcs11 URI of the key labelled object in the token.
func (tok *Token) KeyURI(object string) string {
	return fmt.Sprintf("pkcs11:token=%s;object=%s?module-path=%s&pin-source=file:%s", tok.Label, object, tok.Module, tok.PINFile)
}

//go:build pkcs11 && cgo && !agent

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/internal/testwait"
	"github.com/quorumca/quorumca/signer"
	_ "github.com/quorumca/quorumca/signer/pkcs11"
	"github.com/quorumca/quorumca/signer/pkcs11/hsmtest"
)

// Three server processes of the PKCS#11 build, each with its own copy of
// the SoftHSM2 token directory, as nodes with a real HSM each reach the same
// key: the authority is created through one node and every node signs.
func TestServerProcessesWithPKCS11(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "quorumca-pkcs11")
	build := exec.Command("go", "build", "-tags", "pkcs11", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build with pkcs11: %v\n%s", err, out)
	}

	// The keys are made once, then the token directory is copied per node.
	tok := hsmtest.New(t, "ca-token")
	keys := &signer.Cache{}
	for _, label := range []string{"root", "issuing"} {
		if _, err := keys.Create(context.Background(), tok.KeyURI(label), signer.AlgECP256); err != nil {
			t.Fatal(err)
		}
	}
	keys.Close()
	var env [3][]string
	for i := range 3 {
		tokens := filepath.Join(dir, fmt.Sprintf("hsm-%d", i+1))
		if out, err := exec.Command("cp", "-a", tok.Dir, tokens).CombinedOutput(); err != nil {
			t.Fatalf("copy token: %v\n%s", err, out)
		}
		conf := filepath.Join(dir, fmt.Sprintf("softhsm2-%d.conf", i+1))
		os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600)
		env[i] = []string{"SOFTHSM2_CONF=" + conf}
	}

	pki := devPKI(t, filepath.Join(dir, "pki")) // only the API's TLS certificates
	secretFile := filepath.Join(dir, "join.secret")
	os.WriteFile(secretFile, []byte("e2e-cluster-secret-0123456789\n"), 0o600)
	base := freeBase(t, 3)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", base+i) }
	for i := range 3 {
		path := writeServerConfig(t, dir, i, base, pki, secretFile, "", "")
		startWith(t, bin, env[i], "server", "-config", path, "-log-level", "warn")
	}
	c := httpsClient(t, pki.root)
	testwait.For(t, 60*time.Second, "three nodes with a leader", func() bool {
		for i := range 3 {
			if h, ok := getHealth(c, addr(i)); !ok || h.Leader == "" {
				return false
			}
		}
		_, err := os.Stat(filepath.Join(dir, "admin.token"))
		return err == nil
	})
	adminB, _ := os.ReadFile(filepath.Join(dir, "admin.token"))
	admin := strings.TrimSpace(string(adminB))

	var created struct{ Name string }
	if st := postJSON(t, c, "https://"+addr(1)+"/v1/admin/authorities", admin, map[string]any{
		"name": "hsm", "root_key": tok.KeyURI("root"), "key": tok.KeyURI("issuing"),
	}, &created); st != 201 {
		t.Fatalf("create authority: %d", st)
	}
	for i := range 3 {
		issue(t, c, admin, addr((i+1)%3), addr(i), fmt.Sprintf("hsm-%d.example", i))
	}
}

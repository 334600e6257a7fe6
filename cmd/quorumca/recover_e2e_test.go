//go:build !agent

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/internal/testwait"
)

// 'quorumca operator recover-admin' on a stopped dev node: the token it
// prints works once the node is back, creates one admin, and is used up.
// 'operator compact' refuses the running node and compacts the stopped one.
func TestRecoverAdminCLI(t *testing.T) {
	dir := t.TempDir()
	base := freeBase(t, 1)
	listen := fmt.Sprintf("127.0.0.1:%d", base)
	p := start(t, "dev", "-data-dir", dir, "-listen", listen)
	testwait.For(t, 60*time.Second, "the dev banner", func() bool { return strings.Contains(p.out.String(), "Press Ctrl-C") })
	cli := func(token string, args ...string) (string, string, error) {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "QUORUMCA_ADDR=https://"+listen, "QUORUMCA_CA_FILE="+filepath.Join(dir, "root.pem"),
			"QUORUMCA_ADMIN_TOKEN="+token)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	nodeDir := filepath.Join(dir, "node1")
	if _, errOut, err := cli("", "operator", "recover-admin", "-data-dir", nodeDir); err == nil || !strings.Contains(errOut, "stop the node") {
		t.Fatalf("recover-admin on a running node: %v %s", err, errOut)
	}
	if _, errOut, err := cli("", "operator", "compact", "-data-dir", nodeDir); err == nil || !strings.Contains(errOut, "stop the node") {
		t.Fatalf("compact on a running node: %v %s", err, errOut)
	}
	p.stop(t)
	// The stopped node's state compacted: the node starts on the copy and
	// has its state (the recovery below needs its admins and its raft
	// position to match).
	if out, errOut, err := cli("", "operator", "compact", "-data-dir", nodeDir); err != nil || !strings.Contains(out, "MiB ->") {
		t.Fatalf("compact: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err := cli("", "operator", "recover-admin", "-data-dir", nodeDir)
	token := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(token, "qcat_") || !strings.Contains(errOut, "shown only this once") {
		t.Fatalf("recover-admin: %v\nstdout %q\nstderr %s", err, out, errOut)
	}
	p = start(t, "dev", "-data-dir", dir, "-listen", listen)
	testwait.For(t, 60*time.Second, "the recovery token to work", func() bool {
		out, _, err := cli(token, "admin", "whoami")
		return err == nil && strings.Contains(out, "recovery")
	})
	if out, errOut, err := cli(token, "admin", "create", "-name", "carol", "-role", "admin"); err != nil || !strings.Contains(out, "qcat_") {
		t.Fatalf("admin create with the recovery token: %v\n%s%s", err, out, errOut)
	}
	if _, errOut, err := cli(token, "admin", "create", "-name", "dave", "-role", "admin"); err == nil || !strings.Contains(errOut, "unauthorized") {
		t.Errorf("second admin create with the recovery token: %v %s", err, errOut)
	}
	p.stop(t)
}

//go:build !agent

package main

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// README's "Setting up servers by hand", as written: deploy/by-hand.sh
// makes the PKI with openssl, starts three servers from HCL files, issues
// through a follower, pages a listing and stops them.
func TestServersByHand(t *testing.T) {
	requireTools(t, "bash", "openssl", "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../../deploy/by-hand.sh")
	cmd.Env = append(os.Environ(), "QUORUMCA="+binary, "BASE_PORT="+strconv.Itoa(freeBase(t, 3)), "WORK="+t.TempDir())
	// Its own process group: a timeout stops the servers it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "by-hand: OK") {
		t.Fatalf("deploy/by-hand.sh: %v\n%s", err, out)
	}
	t.Logf("deploy/by-hand.sh took %s", time.Since(start).Round(100*time.Millisecond))
}

//go:build chaos

package chaos

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestChaos runs the fault-injection suite against containers. It needs
// Docker, HAProxy, nsenter and iptables, and root; it is built only with
// -tags chaos (make chaos-short, make chaos). Settings come from the
// environment: CHAOS_SHORT=1, CHAOS_MINUTES, CHAOS_NODES, CHAOS_DEVICES,
// CHAOS_SEED, CHAOS_OUT.
func TestChaos(t *testing.T) {
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logf = t.Logf
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	v, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Pass() {
		t.Fatal(v.Line())
	}
	t.Log(v.Line())
}

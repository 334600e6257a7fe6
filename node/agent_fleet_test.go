//go:build !race

// The fleet test runs without the race detector (make test runs it on its
// own): a thousand agents under -race measure the detector, not the CA.

package node

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumca/quorumca/agent"
	"github.com/quorumca/quorumca/cluster"
)

// A thousand agents started at the same instant enroll through the proxy
// with no failure, and their renewals spread over the jitter window: each
// renews between 7/12 and 9/12 of its certificate's life, uniformly.
func TestAgentFleetSpreadsRenewals(t *testing.T) {
	const fleet = 1000
	const ttl = 40 * time.Second
	// Production Raft timings: the test's fast ones call elections when a
	// thousand clients keep both cores busy.
	c, proxy := agentClusterTiming(t, ttl, cluster.Timing{})
	var warnings atomic.Int64
	var lines firstLines
	logger := slog.New(counting{slog.NewTextHandler(&lines, &slog.HandlerOptions{Level: slog.LevelWarn}), &warnings})

	r := c.do(c.nodes[0], "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"fleet{n}.example"}, "ttl": "1h", "count": fleet}, c.admin)
	if r.status != 201 {
		t.Fatalf("mint: %d %s", r.status, r.body)
	}
	var batch struct{ Tokens []struct{ Token string } }
	r.decode(t, &batch)
	toks := batch.Tokens
	if len(toks) != fleet {
		t.Fatalf("%d tokens", len(toks))
	}

	type outcome struct {
		obtained, renewAt, renewed time.Time
		frac                       float64 // renewal point, as a fraction of the first certificate's life
	}
	results := make(chan outcome, fleet)
	agents := make([]*agent.Agent, fleet)
	ctxs := make([]context.Context, fleet)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Each device has its own storage: the fleet's files go to memory, so
	// that a thousand devices' fsyncs do not land on the CA nodes' disk.
	base := t.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if base, err = os.MkdirTemp("/dev/shm", "quorumca-fleet-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(base) })
	}
	for i := range fleet {
		dir := filepath.Join(base, strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		cfg, _ := c.newAgentConfigIn(dir, proxy.URL(), toks[i].Token, fmt.Sprintf("fleet%d.example", i+1))
		cfg.Logger = logger
		actx, acancel := context.WithCancel(ctx)
		ctxs[i] = actx
		var first agent.State
		cfg.AfterWrite = func() {
			st := agents[i].State() // AfterWrite runs on the agent's goroutine
			if st.Renewals == 0 {
				first = st
				return
			}
			// The CA schedules renewals (renewal-info) from when it
			// signed: NotBefore is backdated a minute.
			signed := first.NotBefore.Add(time.Minute)
			life := first.NotAfter.Sub(signed)
			results <- outcome{obtained: first.Obtained, renewAt: first.RenewAt, renewed: st.Obtained,
				frac: float64(first.RenewAt.Sub(signed)) / float64(life)}
			acancel()
		}
		a, err := agent.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		agents[i] = a
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			a.Run(ctxs[i])
		}()
	}
	t0 := time.Now()
	close(start)
	var outs []outcome
	deadline := time.After(4 * ttl)
	for len(outs) < fleet {
		select {
		case o := <-results:
			outs = append(outs, o)
		case <-deadline:
			t.Fatalf("%d of %d agents renewed in %s", len(outs), fleet, 4*ttl)
		}
	}
	cancel()
	wg.Wait()
	if n := warnings.Load(); n != 0 {
		t.Errorf("%d failed attempts in the fleet; want none. First:\n%s", n, strings.Join(lines.lines, "\n"))
	}

	// Renewal points as fractions of life: all inside [7/12, 9/12], spread
	// evenly over ten bins; each renewal done soon after its point.
	lo, hi := 7.0/12, 9.0/12
	bins := make([]int, 10)
	var lastEnroll, firstRenew, lastRenew time.Time
	var maxLag time.Duration
	firstRenew = outs[0].renewed
	for _, o := range outs {
		if o.frac < lo || o.frac > hi {
			t.Errorf("renewal point %.3f of the life; want %.3f-%.3f", o.frac, lo, hi)
		}
		lag := o.renewed.Sub(o.renewAt)
		if lag < 0 || lag > 10*time.Second {
			t.Errorf("renewed %s after its renewal point", lag)
		}
		maxLag = max(maxLag, lag)
		b := min(int((o.frac-lo)/(hi-lo)*10), 9)
		bins[max(b, 0)]++
		if o.obtained.After(lastEnroll) {
			lastEnroll = o.obtained
		}
		if o.renewed.Before(firstRenew) {
			firstRenew = o.renewed
		}
		if o.renewed.After(lastRenew) {
			lastRenew = o.renewed
		}
	}
	var hist strings.Builder
	for i, n := range bins {
		fmt.Fprintf(&hist, "  %.3f-%.3f %4d %s\n", lo+float64(i)*(hi-lo)/10, lo+float64(i+1)*(hi-lo)/10, n, strings.Repeat("#", n/5))
	}
	t.Logf("%d agents enrolled in %s; renewals from %s to %s after the start (each at most %s after its point); renewal points as a fraction of life:\n%s",
		fleet, lastEnroll.Sub(t0).Round(time.Millisecond), firstRenew.Sub(t0).Round(time.Millisecond), lastRenew.Sub(t0).Round(time.Millisecond),
		maxLag.Round(time.Millisecond), hist.String())
	// Uniform: 100 per bin, standard deviation about 9.5; allow 5 of them.
	for i, n := range bins {
		if math.Abs(float64(n)-fleet/10) > 50 {
			t.Errorf("bin %d holds %d renewals; uniform would be about %d", i, n, fleet/10)
		}
	}
}

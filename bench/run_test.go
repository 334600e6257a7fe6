package bench

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func TestSortedPercentile(t *testing.T) {
	xs := make([]float32, 100)
	for i := range xs {
		xs[i] = float32(i + 1)
	}
	for _, c := range []struct {
		q    float64
		want float64
	}{{0.5, 50}, {0.9, 90}, {0.99, 99}, {0.999, 100}, {1, 100}, {0, 1}} {
		if got := SortedPercentile(xs, c.q); got != c.want {
			t.Errorf("p%v = %v, want %v", c.q*100, got, c.want)
		}
	}
	if got := SortedPercentile([]float64(nil), 0.99); got != 0 {
		t.Errorf("empty: %v", got)
	}
}

// A server that stalls for 400 ms delays every request that arrives during
// the stall. The open loop must show that (latency counts from each
// request's scheduled time); a closed loop sees only the few requests its
// workers had in flight: coordinated omission, which is why the open loop
// exists.
func TestOpenLoopSeesStall(t *testing.T) {
	const stall = 400 * time.Millisecond
	run := func(rate float64) *Result {
		f := &fleet{cfg: Config{Concurrency: 4}, devices: make([]*device, 300)}
		var until time.Time
		ready := make(chan struct{})
		op := func(ctx context.Context, _ *device) string {
			<-ready
			time.Sleep(time.Until(until)) // the stalled server; afterwards instant
			return ""
		}
		// The stall starts with the phase.
		go func() { until = time.Now().Add(stall); close(ready) }()
		return f.drive(context.Background(), "enroll", op, rate, 0, nil)
	}
	open := run(200) // 300 arrivals over 1.5 s: a fifth of them during the stall
	closed := run(0)
	if open.Requests != 300 || closed.Requests != 300 || open.Errors+closed.Errors != 0 {
		t.Fatalf("requests %d/%d, errors %d/%d", open.Requests, closed.Requests, open.Errors, closed.Errors)
	}
	// Open loop: arrivals in the first 400 ms wait up to 400 ms, so more
	// than 10% of all requests took over 100 ms.
	if open.P90ms < 100 || open.MaxMs < 300 {
		t.Errorf("open loop hides the stall: p90 %.1f ms, max %.1f ms", open.P90ms, open.MaxMs)
	}
	// Closed loop: only the 4 requests in flight saw it.
	if closed.P90ms >= 100 || closed.MaxMs < 300 {
		t.Errorf("closed loop: p90 %.1f ms (want < 100), max %.1f ms (want the stall)", closed.P90ms, closed.MaxMs)
	}
	if open.Mode != "open" || closed.Mode != "closed" {
		t.Errorf("modes %q %q", open.Mode, closed.Mode)
	}
}

func TestCompareMarksChange(t *testing.T) {
	a := &Result{Kind: "run", CertsPerSecond: 1000, P99ms: 20}
	b := &Result{Kind: "run", CertsPerSecond: 1500, P99ms: 30}
	var sb strings.Builder
	Compare(&sb, a, b)
	out := sb.String()
	for _, want := range []string{"+50.0% better", "+50.0% worse"} {
		if !strings.Contains(out, want) {
			t.Errorf("compare lacks %q:\n%s", want, out)
		}
	}
	Compare(io.Discard, &Result{}, &Result{}) // zeros: no division by zero
}

package chaos

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Fault is one fault the nemesis injected. Times are seconds since the run
// started.
type Fault struct {
	Kind    string   `json:"fault"`
	Targets []string `json:"targets"`
	Inject  float64  `json:"inject"`
	Heal    float64  `json:"heal"`
	Healthy float64  `json:"healthy"` // every node ready and agreeing again; 0: never
	Err     string   `json:"error,omitempty"`
}

// Bounds on recovery.
type Bounds struct {
	// Recovery bounds the time from a fault's injection to the first
	// successful request started after it (default 10s: a leader kill
	// with Raft's default timeouts).
	Recovery time.Duration
	// Restart bounds the same after restart-all, counted from the moment
	// the nodes are started again (the outage before it is deliberate).
	Restart time.Duration
}

// FaultReport is a fault with what it cost.
type FaultReport struct {
	Fault
	From        float64 // recovery is counted from here (injection, or restart)
	Recovery    float64 // seconds to the first success; -1: none
	Bound       float64
	WithinBound bool
	Ops, Failed int // requests started between injection and health
}

func (f FaultReport) describe() string {
	targets := strings.Join(f.Targets, ",")
	switch {
	case f.Err != "":
		return fmt.Sprintf("%s %s at %.1fs: %s", f.Kind, targets, f.Inject, f.Err)
	case f.Healthy == 0:
		return fmt.Sprintf("%s %s at %.1fs: the cluster did not become whole again after healing", f.Kind, targets, f.Inject)
	case f.Recovery < 0:
		return fmt.Sprintf("%s %s at %.1fs: no request succeeded afterwards", f.Kind, targets, f.Inject)
	}
	return fmt.Sprintf("%s %s at %.1fs: recovered after %.1fs, bound %.0fs", f.Kind, targets, f.Inject, f.Recovery, f.Bound)
}

// availability measures each fault: the time from injection (restart-all:
// from the restart) to the end of the first successful request that
// started after it, and the requests that failed until the cluster was
// whole again.
func availability(ops []Op, faults []Fault, b Bounds) []FaultReport {
	if b.Recovery <= 0 {
		b.Recovery = 10 * time.Second
	}
	if b.Restart <= 0 {
		b.Restart = 30 * time.Second
	}
	var out []FaultReport
	for i, f := range faults {
		next := math.Inf(1)
		if i+1 < len(faults) {
			next = faults[i+1].Inject
		}
		r := FaultReport{Fault: f, From: f.Inject, Recovery: -1, Bound: b.Recovery.Seconds()}
		if f.Kind == RestartAll {
			r.From, r.Bound = f.Heal, b.Restart.Seconds()
		}
		end := f.Healthy
		if end == 0 {
			end = next
		}
		for _, op := range ops {
			if !isLoad(op) {
				continue
			}
			if op.Start >= f.Inject && op.Start <= end {
				r.Ops++
				if op.Outcome != OK {
					r.Failed++
				}
			}
			if op.Outcome == OK && op.Start >= r.From && op.Start < next {
				if d := op.End - r.From; r.Recovery < 0 || d < r.Recovery {
					r.Recovery = d
				}
			}
		}
		r.WithinBound = f.Err == "" && f.Healthy > 0 && r.Recovery >= 0 && r.Recovery <= r.Bound
		out = append(out, r)
	}
	return out
}

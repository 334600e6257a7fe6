package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Run enrolls devices (and with cfg.Renew, then renews them) against the
// CA, in a closed loop of cfg.Concurrency workers or, with cfg.Rate, in an
// open loop. The measured phase lasts cfg.Duration or until every device
// has had its turn.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	switch cfg.Protocol {
	case "", "json":
	case "est", "scep":
		if cfg.peer != nil || cfg.OCSP {
			// Neither answer carries a chain to build OCSP requests from.
			return nil, fmt.Errorf("bench: -protocol %s is quorumca's enrollment and renewal, without -ocsp", cfg.Protocol)
		}
		if cfg.Protocol == "scep" && cfg.KeyType != "rsa2048" {
			// SCEP replies are encrypted to the requester's key: RSA only.
			return nil, errors.New("bench: -protocol scep needs -key-type rsa2048")
		}
	default:
		return nil, fmt.Errorf("bench: -protocol %q: want json, est or scep", cfg.Protocol)
	}
	f, err := newFleet(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var res *Result
	if cfg.OCSP {
		enrolled := f.drive(ctx, "enroll", f.enroll, 0, 0, nil)
		if enrolled.Errors > 0 {
			return enrolled, fmt.Errorf("enrollment phase: %d errors", enrolled.Errors)
		}
		// A first answer per certificate is signed; relying parties then
		// ask again and again, and that read path is what is measured:
		// the fleet in turn, over and over, until the phase ends.
		first := f.drive(ctx, "ocsp-first", f.askOCSP, 0, 0, nil)
		fleet := f.devices
		for len(f.devices) < 1_000_000 {
			f.devices = append(f.devices, fleet...)
		}
		res = f.measure(ctx, "ocsp", f.askOCSP)
		f.devices, res.Devices = fleet, len(fleet)
		res.Phases = []*Result{enrolled, first}
	} else if !cfg.Renew {
		if err := f.warm(ctx, f.enrollC); err != nil {
			return nil, err
		}
		name := "enroll"
		if cfg.Protocol == "est" || cfg.Protocol == "scep" {
			name = "enroll-" + cfg.Protocol
		}
		res = f.measure(ctx, name, f.enroll)
	} else {
		// Every device enrolls first, as fast as it goes; then renewals
		// are measured.
		enrolled := f.drive(ctx, "enroll", f.enroll, 0, 0, nil)
		if enrolled.Errors > 0 {
			return enrolled, fmt.Errorf("enrollment phase: %d errors", enrolled.Errors)
		}
		if cfg.KeepAlive {
			if err := f.warm(ctx, f.renewC); err != nil {
				return nil, err
			}
		}
		res = f.measure(ctx, "renew", f.renew)
		res.Phases = []*Result{enrolled}
		if !cfg.KeepAlive {
			res.HandshakesPS = f.handshakeRate(ctx, 3*time.Second, cfg.Concurrency, f.devices[0].cert)
		}
	}
	res.Kind = "run"
	res.CeilingPerSec = cfg.Ceiling
	return res, nil
}

// measure is the measured phase of a run: op over the devices at
// cfg.Rate (or closed loop) for cfg.Duration, with the CPU that the CA
// process (cfg.CAPid) and the harness spent on it.
func (f *fleet) measure(ctx context.Context, name string, op func(context.Context, *device) string) *Result {
	before := markCPU(f.cfg.CAPid)
	res := f.drive(ctx, name, op, f.cfg.Rate, f.cfg.Duration, nil)
	before.report(f.cfg.CAPid, res)
	return res
}

// drive runs op over the devices. rate > 0: open loop, arrivals on a clock
// (at the given offsets if at is set), latency measured from each
// arrival's scheduled time so a stall cannot hide; rate 0: closed loop.
// d > 0 bounds the phase.
func (f *fleet) drive(ctx context.Context, name string, op func(context.Context, *device) string, rate float64, d time.Duration, at []time.Duration) *Result {
	res := &Result{Operation: name, Addr: f.cfg.Addr, Concurrency: f.cfg.Concurrency, Devices: len(f.devices),
		KeyType: orDefault(f.cfg.KeyType, "ec256"), Machine: thisMachine(), NewConn: name == "renew" && !f.cfg.KeepAlive}
	start := time.Now()
	res.Started = start
	rec := newRecorder(start)
	stop := make(chan struct{})
	go rec.progress(f.cfg.Progress, name, stop)
	var deadline time.Time
	if d > 0 {
		deadline = start.Add(d)
	}
	var wg sync.WaitGroup
	if rate <= 0 && at == nil {
		res.Mode = "closed"
		var next atomic.Int64
		for range f.cfg.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					i := int(next.Add(1) - 1)
					if i >= len(f.devices) || (!deadline.IsZero() && time.Now().After(deadline)) {
						return
					}
					t := time.Now()
					code := op(ctx, f.devices[i])
					rec.add(t, time.Now(), code)
				}
			}()
		}
	} else {
		res.Mode, res.TargetRate = "open", rate
		type job struct {
			i     int
			sched time.Time
		}
		jobs := make(chan job, len(f.devices))
		for range f.cfg.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range jobs {
					if ctx.Err() != nil {
						continue
					}
					code := op(ctx, f.devices[j.i])
					rec.add(j.sched, time.Now(), code)
				}
			}()
		}
		// The scheduler never waits for workers: a request not started on
		// time waits in the queue, and that wait is part of its latency.
		for i := range f.devices {
			var sched time.Time
			if at != nil {
				sched = start.Add(at[i])
			} else {
				sched = start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			}
			if !deadline.IsZero() && sched.After(deadline) {
				break
			}
			if w := time.Until(sched); w > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(w):
				}
			}
			if ctx.Err() != nil {
				break
			}
			jobs <- job{i, sched}
		}
		close(jobs)
	}
	wg.Wait()
	close(stop)
	rec.result(res, time.Since(start))
	return res
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// StormConfig is a renewal storm: every device renews within Window.
type StormConfig struct {
	Config
	Window time.Duration // default 60s
}

// Storm enrolls the fleet, then has every device renew at a random moment
// of the window, each over a new mTLS connection, as after an outage. The
// cluster kept up if no renewal failed and the 99th percentile of the
// time from a device's moment to its new certificate stayed under a
// second (a cluster that falls behind queues, and that shows there).
func Storm(ctx context.Context, cfg StormConfig) (*Result, error) {
	cfg.defaults()
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	f, err := newFleet(ctx, cfg.Config)
	if err != nil {
		return nil, err
	}
	enrolled := f.drive(ctx, "enroll", f.enroll, 0, 0, nil)
	if enrolled.Errors > 0 {
		return enrolled, fmt.Errorf("enrollment phase: %d errors", enrolled.Errors)
	}
	at := make([]time.Duration, len(f.devices))
	for i := range at {
		at[i] = time.Duration(rand.Int64N(int64(cfg.Window)))
	}
	slices.Sort(at)
	// Enough workers that the harness itself never queues at the average
	// rate with second-long latencies.
	f.cfg.Concurrency = max(f.cfg.Concurrency, 256)
	res := f.drive(ctx, "renew", f.renew, float64(len(at))/cfg.Window.Seconds(), 0, at)
	res.Kind, res.Window, res.Phases = "storm", cfg.Window.Seconds(), []*Result{enrolled}
	kept := res.Errors == 0 && res.P99ms < 1000
	res.KeptUp = &kept
	res.CeilingPerSec = cfg.Ceiling
	return res, nil
}

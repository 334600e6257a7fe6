package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Fault kinds. What each tests is in the README.
const (
	KillLeader        = "kill-leader"        // kill -9 the leader; restart it at heal
	KillFollower      = "kill-follower"      // kill -9 a follower; restart it at heal
	PauseLeader       = "pause-leader"       // SIGSTOP the leader; SIGCONT at heal
	PartitionLeader   = "partition-leader"   // cut the leader off from every other node (iptables); HAProxy still reaches it
	PartitionMinority = "partition-minority" // take a minority of followers off the network (docker network disconnect)
	RestartAll        = "restart-all"        // kill -9 every node at once; start them all at heal
)

// AllFaults is every fault kind, in the order a short run injects them.
var AllFaults = []string{KillFollower, KillLeader, PauseLeader, PartitionMinority, PartitionLeader, RestartAll}

// nemesis injects faults into the cluster and records them.
type nemesis struct {
	c    *cluster
	h    *haproxy
	hist *history
	logf func(string, ...any)
	// probe, if set, asks the healed targets about earlier revocations.
	probe func(ctx context.Context, targets []string)

	mu     sync.Mutex
	faults []Fault
}

// step is one scheduled fault: inject, hold, heal, wait for the cluster to
// be whole, then a quiet gap.
type step struct {
	kind        string
	hold, quiet time.Duration
}

// schedule is the faults of a run: a short run has one of each; a long one
// cycles through every kind in shuffled rounds, with random durations,
// until about d has passed.
func schedule(short bool, d time.Duration, seed uint64) []step {
	if short {
		var out []step
		for _, k := range AllFaults {
			hold := 8 * time.Second
			if k == RestartAll {
				hold = 2 * time.Second
			}
			out = append(out, step{kind: k, hold: hold, quiet: 4 * time.Second})
		}
		return out
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out []step
	var total time.Duration
	for total < d {
		kinds := append([]string(nil), AllFaults...)
		r.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
		for _, k := range kinds {
			hold := 5*time.Second + time.Duration(r.Int64N(int64(15*time.Second)))
			if k == RestartAll {
				hold = time.Second + time.Duration(r.Int64N(int64(4*time.Second)))
			}
			quiet := 5*time.Second + time.Duration(r.Int64N(int64(10*time.Second)))
			// About 2 s for the cluster to become whole after each heal.
			if total += hold + quiet + 2*time.Second; total > d && len(out) >= len(AllFaults) {
				return out
			}
			out = append(out, step{kind: k, hold: hold, quiet: quiet})
		}
	}
	return out
}

func (n *nemesis) event(f *Fault, phase string) {
	n.hist.add(Op{Kind: OpNemesis, Fault: f.Kind, Target: fmt.Sprint(f.Targets), Phase: phase,
		Start: n.hist.since(time.Now()), End: n.hist.since(time.Now()), Outcome: OK, Error: f.Err})
}

// run injects s, holds it, heals it and waits for the cluster to be whole.
// It returns false when the cluster did not become whole again, after
// which further faults mean nothing.
func (n *nemesis) run(ctx context.Context, s step, healthTimeout time.Duration) bool {
	f := &Fault{Kind: s.kind}
	heal, err := n.inject(ctx, f)
	f.Inject = n.hist.since(time.Now())
	if err != nil {
		f.Err = "inject: " + err.Error()
	}
	n.event(f, "inject")
	n.logf("nemesis: %s %v", f.Kind, f.Targets)
	if heal != nil {
		sleep(ctx, s.hold)
		if err := heal(ctx); err != nil && f.Err == "" {
			f.Err = "heal: " + err.Error()
		}
	}
	f.Heal = n.hist.since(time.Now())
	n.event(f, "heal")
	var probed sync.WaitGroup
	if n.probe != nil && heal != nil {
		targets := append([]string(nil), f.Targets...)
		probed.Go(func() { n.probe(ctx, targets) })
	}
	defer probed.Wait()
	whole := n.awaitWhole(ctx, healthTimeout)
	if whole {
		f.Healthy = n.hist.since(time.Now())
		n.event(f, "healthy")
		n.logf("nemesis: %s healed; cluster whole %.1fs after healing", f.Kind, f.Healthy-f.Heal)
	} else {
		n.logf("nemesis: %s: the cluster is not whole %s after healing", f.Kind, healthTimeout)
	}
	n.mu.Lock()
	n.faults = append(n.faults, *f)
	n.mu.Unlock()
	return whole
}

// awaitWhole waits until every node is ready and agrees on the leader and
// HAProxy sees them all up.
func (n *nemesis) awaitWhole(ctx context.Context, timeout time.Duration) bool {
	return n.c.awaitWhole(ctx, timeout, n.h)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// inject starts a fault and returns the function that heals it.
func (n *nemesis) inject(ctx context.Context, f *Fault) (func(context.Context) error, error) {
	c := n.c
	var leader *cnode
	awaitCond(ctx, 10*time.Second, func() bool { leader = c.leader(ctx); return leader != nil })
	if leader == nil && f.Kind != RestartAll && f.Kind != PartitionMinority && f.Kind != KillFollower {
		return nil, errors.New("no leader to target")
	}
	followers := c.others(leader)
	rand.Shuffle(len(followers), func(i, j int) { followers[i], followers[j] = followers[j], followers[i] })
	switch f.Kind {
	case KillLeader, KillFollower:
		target := leader
		if f.Kind == KillFollower {
			target = followers[0]
		}
		f.Targets = []string{target.name}
		if err := c.signal(ctx, target, "KILL"); err != nil {
			return nil, err
		}
		return func(ctx context.Context) error { return c.start(ctx, target) }, nil
	case PauseLeader:
		f.Targets = []string{leader.name}
		if err := c.signal(ctx, leader, "STOP"); err != nil {
			return nil, err
		}
		return func(ctx context.Context) error { return c.signal(ctx, leader, "CONT") }, nil
	case PartitionLeader:
		f.Targets = []string{leader.name}
		if err := c.isolate(ctx, leader); err != nil {
			c.unisolate(ctx, leader)
			return nil, err
		}
		return func(ctx context.Context) error { return c.unisolate(ctx, leader) }, nil
	case PartitionMinority:
		minority := followers[:(len(c.nodes)-1)/2]
		for _, nd := range minority {
			f.Targets = append(f.Targets, nd.name)
		}
		var errs []error
		for _, nd := range minority {
			errs = append(errs, c.disconnect(ctx, nd))
		}
		return func(ctx context.Context) error {
			var errs []error
			for _, nd := range minority {
				errs = append(errs, c.connect(ctx, nd))
			}
			return errors.Join(errs...)
		}, errors.Join(errs...)
	case RestartAll:
		for _, nd := range c.nodes {
			f.Targets = append(f.Targets, nd.name)
		}
		err := c.each(ctx, func(ctx context.Context, nd *cnode) error { return c.signal(ctx, nd, "KILL") })
		return func(ctx context.Context) error {
			return c.each(ctx, func(ctx context.Context, nd *cnode) error { return c.start(ctx, nd) })
		}, err
	}
	return nil, fmt.Errorf("unknown fault %q", f.Kind)
}

// others is every node but nd.
func (c *cluster) others(nd *cnode) []*cnode {
	var out []*cnode
	for _, o := range c.nodes {
		if o != nd {
			out = append(out, o)
		}
	}
	return out
}

// each runs fn on every node at once.
func (c *cluster) each(ctx context.Context, fn func(context.Context, *cnode) error) error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, nd := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn(ctx, nd) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// awaitWhole polls until the cluster has converged and HAProxy (if given)
// sees every node up, or the timeout passes.
func (c *cluster) awaitWhole(ctx context.Context, timeout time.Duration, h *haproxy) bool {
	return awaitCond(ctx, timeout, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		ok, _ := c.converged(cctx)
		return ok && (h == nil || h.allUp(cctx, len(c.nodes)))
	})
}

package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Read-index rounds are shared, as etcd batches ReadIndex requests. A read
// that must see every write acknowledged before it began needs a read index
// obtained after it began; a round already in flight may have read its index
// before that, so a newcomer cannot join it. It joins the next round, which
// starts as soon as the one in flight ends, together with everyone else who
// arrived meanwhile. So each node runs at most one round at a time, one per
// round trip however many reads miss, and a read waits at most two rounds.

// readRounds runs fetch once per round for every caller waiting for it.
type readRounds struct {
	fetch   func(ctx context.Context) (uint64, error)
	ctx     context.Context // the cluster's life: a round outlives its callers
	timeout time.Duration
	rounds  prometheus.Counter

	mu      sync.Mutex
	running *readRound // its index may predate callers that arrived since
	next    *readRound // not started: each of its callers arrived before it starts
}

type readRound struct {
	done    chan struct{}
	callers int // under readRounds.mu
	index   uint64
	err     error
}

func newReadRounds(ctx context.Context, timeout time.Duration, rounds prometheus.Counter, fetch func(context.Context) (uint64, error)) *readRounds {
	return &readRounds{fetch: fetch, ctx: ctx, timeout: timeout, rounds: rounds}
}

// index returns a read index obtained after index was called.
func (rr *readRounds) index(ctx context.Context) (uint64, error) {
	rr.mu.Lock()
	var r *readRound
	switch {
	case rr.running == nil:
		r = &readRound{done: make(chan struct{})}
		rr.running = r
		go rr.run(r)
	case rr.next == nil:
		r = &readRound{done: make(chan struct{})}
		rr.next = r
	default:
		r = rr.next
	}
	r.callers++
	rr.mu.Unlock()
	select {
	case <-r.done:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run runs r, then the rounds that gathered behind it, until none waits.
func (rr *readRounds) run(r *readRound) {
	for r != nil {
		ctx, cancel := context.WithTimeout(rr.ctx, rr.timeout)
		r.index, r.err = rr.fetch(ctx)
		cancel()
		rr.rounds.Inc()
		close(r.done)
		rr.mu.Lock()
		r, rr.next = rr.next, nil
		rr.running = r
		rr.mu.Unlock()
	}
}

// readMetrics counts barriers and the rounds that served them.
type readMetrics struct {
	barriers prometheus.Counter
	rounds   *prometheus.CounterVec
}

func newReadMetrics(reg prometheus.Registerer) (*readMetrics, error) {
	m := &readMetrics{
		barriers: prometheus.NewCounter(prometheus.CounterOpts{Name: "quorumca_read_barriers_total",
			Help: "Reads that waited for a read index (local misses, admin read-backs)."}),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quorumca_read_index_rounds_total",
			Help: "Read-index rounds: asked by this node for its barriers, or answered by this leader for other nodes. Each serves every caller waiting for it."},
			[]string{"side"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.barriers, m.rounds} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// readIndex is a read index of the leader's obtained after the call, from
// this node's shared rounds.
func (c *Cluster) readIndex(ctx context.Context) (uint64, error) {
	c.readMetrics.barriers.Inc()
	return c.reads.index(ctx)
}

// askReadIndex is one round of this node: the leader's read index, asked
// over RPC, or its own when this node leads.
func (c *Cluster) askReadIndex(ctx context.Context) (uint64, error) {
	var out indexReply
	err := callLeader(ctx, c, pathIndex, []byte("{}"), &out, func(ctx context.Context) error {
		var err error
		out.Index, err = c.leaderIndex()
		return err
	})
	return out.Index, err
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// Group commit on the leader. Raft hands the FSM whatever was committed
// together, but on a busy node that is whatever arrived during the previous
// fsync: a handful of commands, each batch paying a log append and an FSM
// transaction with their fsyncs. The batcher keeps at most batchDepth
// entries in flight and packs every command that queued up behind them into
// the next entry, so the batch grows with the load and the fsyncs do not.

const (
	batchDepth    = 2       // raft entries in flight: one appending while one applies
	maxBatch      = 512     // commands per entry
	maxBatchBytes = 4 << 20 // bytes per entry
)

// proposal is one encoded envelope waiting for its entry.
type proposal struct {
	data   []byte
	format int                 // the log format data is encoded for
	done   chan proposalResult // buffered: the batcher never blocks on a caller
}

type proposalResult struct {
	index uint64
	resp  any // the FSM's result: nil or an error
	err   error
}

// batcher gathers proposals and hands each gathered batch to send, with at
// most depth batches in flight. send answers every proposal of its batch
// and runs on its own goroutine.
type batcher struct {
	c     *Cluster
	queue chan *proposal
	slots chan struct{}
	send  func(batch []*proposal)
}

func newBatcher(c *Cluster, depth int, send func(batch []*proposal)) *batcher {
	return &batcher{c: c, queue: make(chan *proposal, maxBatch), slots: make(chan struct{}, depth), send: send}
}

// propose queues data for the next entry and waits for its result.
func (b *batcher) propose(ctx context.Context, data []byte, format int) proposalResult {
	p := &proposal{data: data, format: format, done: make(chan proposalResult, 1)}
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return proposalResult{err: ctx.Err()}
	case <-b.c.ctx.Done():
		return proposalResult{err: ErrShutdown}
	}
	// Once queued the command may be committed: wait for the verdict even
	// if the caller gives up, as a raft future would be waited for.
	select {
	case r := <-p.done:
		return r
	case <-b.c.ctx.Done():
		return proposalResult{err: ErrShutdown}
	}
}

func (b *batcher) run() {
	defer b.c.wg.Done()
	ctx := b.c.ctx
	var held *proposal // would have overfilled the previous batch
	for {
		select {
		case b.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		batch := []*proposal{held}
		if held == nil {
			select {
			case p := <-b.queue:
				batch[0] = p
			case <-ctx.Done():
				return
			}
		}
		held = nil
		size := len(batch[0].data)
		// A batch stays within maxBatchBytes unless one command alone is
		// larger, so a forwarded batch fits one RPC (MaxCommandBytes).
	drain:
		for len(batch) < maxBatch {
			select {
			case p := <-b.queue:
				if size+len(p.data) > maxBatchBytes {
					held = p
					break drain
				}
				batch = append(batch, p)
				size += len(p.data)
			default:
				break drain
			}
		}
		go func() {
			b.send(batch)
			<-b.slots
		}()
	}
}

// commit is the leader's send: one raft entry for the whole batch, or one
// per command while a server cannot read batch entries (format.go). A
// command encoded for a newer format than the leader writes now (it
// lowered the format while the command queued) is not written but tried
// again, encoded anew; formatMu keeps the format from changing between
// that check and the hand-over to raft.
func (c *Cluster) commit(batch []*proposal) {
	c.formatMu.RLock()
	format := c.logFormat()
	batch = slices.DeleteFunc(batch, func(p *proposal) bool {
		if p.format <= format {
			return false
		}
		p.done <- proposalResult{err: errRetry{fmt.Errorf("%w: the log format is %d now, not %d", ErrNotLeader, format, p.format)}}
		return true
	})
	var futures []raft.ApplyFuture
	switch {
	case len(batch) > 1 && format < 1:
		for _, p := range batch {
			futures = append(futures, c.raft.Apply(p.data, c.cfg.HoldTimeout))
		}
	case len(batch) > 1:
		parts := make([][]byte, len(batch))
		for i, p := range batch {
			parts[i] = p.data
		}
		futures = append(futures, c.raft.Apply(fsm.EncodeBatch(parts), c.cfg.HoldTimeout))
	case len(batch) == 1:
		futures = append(futures, c.raft.Apply(batch[0].data, c.cfg.HoldTimeout))
	}
	c.formatMu.RUnlock()

	if len(futures) == len(batch) { // one entry per command
		for i, p := range batch {
			if err := futures[i].Error(); err != nil {
				p.done <- proposalResult{err: translate(err)}
				continue
			}
			p.done <- proposalResult{index: futures[i].Index(), resp: futures[i].Response()}
		}
		return
	}
	f := futures[0]
	if err := f.Error(); err != nil {
		fail(batch, translate(err))
		return
	}
	idx := f.Index()
	resps, ok := f.Response().([]any)
	if !ok || len(resps) != len(batch) {
		// The FSM answers a batch entry with one result per command; anything
		// else is a bug, and no command may be acknowledged on a guess.
		fail(batch, fmt.Errorf("cluster: batch entry %d answered with %T", idx, f.Response()))
		return
	}
	for i, p := range batch {
		p.done <- proposalResult{index: idx, resp: resps[i]}
	}
}

// fail answers every proposal of batch with err.
func fail(batch []*proposal, err error) {
	for _, p := range batch {
		p.done <- proposalResult{err: err}
	}
}

// Forwarding is batched the same way: the writes that reach a follower
// while its RPC to the leader is in flight travel together in the next
// one, and the leader proposes them together.

const (
	forwardDepth = 4          // RPCs in flight to the leader
	codeInternal = "internal" // a failure that is neither a verdict nor worth a retry
)

type batchResult struct {
	Index uint64    `json:"index,omitempty"`
	Error *rpcError `json:"error,omitempty"`
	Retry bool      `json:"retry,omitempty"` // the leader could not take it: try again
}

type batchReply struct {
	Results []batchResult `json:"results"`
}

// forwardBatch is the follower's send: one RPC to the leader.
func (c *Cluster) forwardBatch(batch []*proposal) {
	envs := make([][]byte, len(batch))
	for i, p := range batch {
		envs[i] = p.data
	}
	body := fsm.EncodeBatch(envs) // the framing of a batch entry
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.HoldTimeout)
	defer cancel()
	var out batchReply
	err := c.forward(ctx, pathApplyBatch, body, &out)
	if errors.Is(err, errUnknownPath) {
		// A leader from before batched forwarding (a rolling upgrade in
		// progress): one RPC per write, as it expects.
		c.forwardEach(ctx, batch)
		return
	}
	if err == nil && len(out.Results) != len(batch) {
		err = errRetry{fmt.Errorf("cluster: leader answered %d of %d forwarded writes", len(out.Results), len(batch))}
	}
	if err != nil {
		fail(batch, err)
		return
	}
	for i, p := range batch {
		r := out.Results[i]
		switch {
		case r.Retry:
			msg := "leader refused the write"
			if r.Error != nil {
				msg = r.Error.Message
			}
			p.done <- proposalResult{err: errRetry{fmt.Errorf("%w: %s", ErrNotLeader, msg)}}
		case r.Error != nil && r.Error.Code == codeInternal:
			p.done <- proposalResult{err: fmt.Errorf("cluster: leader: %s", r.Error.Message)}
		case r.Error != nil:
			p.done <- proposalResult{index: r.Index, resp: fsm.Refusal(r.Error.Code, r.Error.Message)}
		default:
			p.done <- proposalResult{index: r.Index}
		}
	}
}

// forwardEach sends each write of batch on its own to the leader's apply,
// as the JSON envelope such a leader reads.
func (c *Cluster) forwardEach(ctx context.Context, batch []*proposal) {
	var wg sync.WaitGroup
	for _, p := range batch {
		wg.Go(func() {
			var out applyReply
			env, err := fsm.DecodeEnvelope(p.data)
			var data []byte
			if err == nil {
				data, err = env.EncodeJSON()
			}
			if err == nil {
				err = c.forward(ctx, pathApply, data, &out)
			}
			switch {
			case fsm.IsRefusal(err):
				p.done <- proposalResult{resp: err}
			case err != nil:
				p.done <- proposalResult{err: err}
			default:
				p.done <- proposalResult{index: out.Index}
			}
		})
	}
	wg.Wait()
}

// serveApplyBatch is the leader's side of a forwarded batch: every write is
// proposed at once, so they share the leader's next entries.
func (c *Cluster) serveApplyBatch(ctx context.Context, body []byte) (any, error) {
	raw, err := fsm.SplitBatch(body)
	if err != nil || len(raw) > maxBatch {
		return nil, errBadRPC{fmt.Errorf("apply batch: want a batch of 1 to %d envelopes", maxBatch)}
	}
	envs := make([]*fsm.Envelope, len(raw))
	for i, r := range raw {
		env, err := fsm.DecodeEnvelope(r)
		if err != nil {
			return nil, errBadRPC{err}
		}
		if err := checkForwarded(ctx, env); err != nil {
			return nil, err
		}
		envs[i] = env
	}
	out := batchReply{Results: make([]batchResult, len(envs))}
	var wg sync.WaitGroup
	for i, env := range envs {
		wg.Go(func() {
			idx, err := c.applyLocal(ctx, env)
			out.Results[i] = resultOf(idx, err)
		})
	}
	wg.Wait()
	return out, nil
}

func resultOf(idx uint64, err error) batchResult {
	switch {
	case err == nil:
		return batchResult{Index: idx}
	case fsm.IsRefusal(err):
		return batchResult{Index: idx, Error: &rpcError{Code: errs.Of(err).Code, Message: err.Error()}}
	case retryable(err), errors.Is(err, ErrShutdown), errors.Is(err, ErrNoLeader), errors.Is(err, ErrTimeout):
		return batchResult{Retry: true, Error: &rpcError{Code: "not_leader", Message: err.Error()}}
	}
	return batchResult{Error: &rpcError{Code: codeInternal, Message: err.Error()}}
}

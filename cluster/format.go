package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/backoff"
)

// The log format gate. A binary reads log formats up to fsm.LogFormat and
// panics on a newer entry (it must: skipping it would diverge). So the
// leader writes batch entries and binary envelopes only while every server
// of the configuration says it reads them; a server that predates the
// question (404) counts as format 0: JSON envelopes, one per entry. A
// server that does not answer counts as the format it announced in the node
// table (announceLoop; 0 if it never did), so an outage does not turn newer
// commands off. A rolling upgrade may then go in any order, and a leader
// never needs to know which release its followers run. (Downgrading a node once
// the newer format is in the log is not supported.)

const formatPoll = 2 * time.Second

// unannouncedGrace is how long a server of the configuration may be in it
// without having announced itself (a joiner does within a second) before
// the leader stops waiting for it: until then a command newer than format
// 0 waits for its answer (a retry, within the write's hold time) instead
// of being told a server runs an older release; after, it counts as format
// 0 (an old release that never announces, or a node down since it joined).
const unannouncedGrace = 10 * time.Second

type formatReply struct {
	Format int `json:"format"`
}

// logFormat is the format this leader writes now.
func (c *Cluster) logFormat() int { return int(c.format.Load()) }

// formatLoop, while this node leads, keeps c.format at the lowest format
// any server of the configuration reads. It starts the term at the formats
// the servers announced, so a leader elected while a server is down or
// slow does not write format 0 until that server's answer times out.
func (c *Cluster) formatLoop(ctx context.Context) {
	term := c.raft.CurrentTerm()
	if f, ok := c.announcedFormat(); ok {
		c.setFormat(f, 0)
		// Nothing newer is possible; below that, a server may read more
		// than its announcement says (healFormat): wait for the answers.
		c.formatKnown.Store(f == fsm.LogFormat)
	}
	c.formatTerm.Store(term) // writes may go now (applyLocal)
	defer func() {           // and from the start in a later term
		c.formatKnown.Store(false)
		c.setFormat(0, 0)
	}()
	var silentSince time.Time // since when a server has not announced itself
	for {
		f, config, complete := c.clusterFormat(ctx)
		switch {
		case complete:
			silentSince = time.Time{}
		case silentSince.IsZero():
			silentSince = time.Now()
		}
		if c.setFormat(f, config) {
			c.formatKnown.Store(complete || time.Since(silentSince) > unannouncedGrace)
		}
		c.markFormat(ctx)
		if !backoff.Sleep(ctx, formatPoll) {
			return
		}
	}
}

// markFormat writes the format this leader writes into the state (a
// log_format entry) once it is the newest and the state holds none of it:
// what the state machine stores differently from a format on (records,
// from 4) then changes at one entry on every node.
func (c *Cluster) markFormat(ctx context.Context) {
	if c.logFormat() != fsm.LogFormat || c.fsm.HighestLogFormat() >= fsm.LogFormat {
		return
	}
	if err := c.propose(ctx, fsm.CmdLogFormat, fsm.LogFormatMark{Format: fsm.LogFormat}); err != nil && ctx.Err() == nil {
		c.log.Debug("log format: could not mark the format in the state; retried", "err", err)
	}
}

// setFormat changes the format this leader writes, to f as asked of the
// servers of configuration config (0: whatever the configuration). It
// holds formatMu: lowering waits for commits that checked the old format
// (commit), so no entry encoded for a format is handed to raft after the
// leader stopped writing it; and a join checks a joiner against the format
// under the same lock, so an answer from before the joiner was added
// (another configuration) is dropped, not applied (false).
func (c *Cluster) setFormat(f int, config uint64) bool {
	c.formatMu.Lock()
	defer c.formatMu.Unlock()
	if config != 0 {
		cf := c.raft.GetConfiguration()
		if cf.Error() != nil || cf.Index() != config {
			return false
		}
	}
	if prev := c.format.Swap(int32(f)); int(prev) != f {
		c.log.Info("log format", "format", f)
	}
	return true
}

// announcedFormat is the lowest format the servers of the configuration
// announced in the node table; false if one has not announced itself.
func (c *Cluster) announcedFormat() (int, bool) {
	servers, err := c.Servers()
	if err != nil {
		return 0, false
	}
	lowest := fsm.LogFormat
	for _, s := range servers {
		if string(s.ID) == c.cfg.NodeID {
			continue
		}
		n, err := c.fsm.Node(string(s.ID))
		if err != nil {
			return 0, false
		}
		lowest = min(lowest, clampFormat(n.LogFormat))
	}
	return lowest, true
}

// clampFormat bounds a format a peer claims to those a leader can write;
// a negative claim is nonsense, and counts as the oldest.
func clampFormat(f int) int { return max(0, min(f, fsm.LogFormat)) }

// clusterFormat asks every server of the configuration which format it
// reads, and returns the lowest and the configuration's index; complete is
// false when a server has not announced itself (no address to ask): then
// the lowest is 0.
func (c *Cluster) clusterFormat(ctx context.Context) (lowest int, config uint64, complete bool) {
	cf := c.raft.GetConfiguration()
	if cf.Error() != nil {
		return 0, 0, false
	}
	lowest = fsm.LogFormat
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == c.cfg.NodeID {
			continue
		}
		n, err := c.fsm.Node(string(s.ID))
		if err != nil {
			return 0, cf.Index(), false
		}
		announced := clampFormat(n.LogFormat)
		var out formatReply
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		err = c.postAs(rctx, n.ID, "https://"+n.APIAddr+pathFormat, []byte("{}"), &out)
		cancel()
		switch {
		case errors.Is(err, errUnknownPath):
			c.log.Debug("log format: server predates the question", "server", s.ID)
			out.Format = 0
		case err != nil || out.Format < 0:
			// Down, paused or cut off (or a nonsense answer): the format
			// it announced, so an outage does not turn off what every
			// server reads.
			c.log.Debug("log format: server did not answer; taking the format it announced", "server", s.ID, "format", announced, "err", err)
			out.Format = announced
		}
		out.Format = clampFormat(out.Format)
		if out.Format != announced {
			c.healFormat(ctx, *n, out.Format)
		}
		lowest = min(lowest, out.Format)
	}
	return lowest, cf.Index(), true
}

// healFormat records in the node table the format a server answered, where
// its announcement says otherwise: a node of an earlier release applies a
// server's announcement without the format (it does not know the field),
// and a server may run an older release again. A later leader starts its
// term from the table (formatLoop).
func (c *Cluster) healFormat(ctx context.Context, n fsm.Node, format int) {
	n.LogFormat = format
	if err := c.propose(ctx, fsm.CmdNodeUpsert, n); err != nil {
		c.log.Debug("log format: could not record a server's format", "server", n.ID, "err", err)
	}
}

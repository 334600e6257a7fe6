package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/quorumca/quorumca/fsm"
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
		c.setFormat(f)
		// Nothing newer is possible; below that, a server may read more
		// than its announcement says (healFormat): wait for the answers.
		c.formatKnown.Store(f == fsm.LogFormat)
	}
	c.formatTerm.Store(term) // writes may go now (applyLocal)
	defer func() {           // and from the start in a later term
		c.formatKnown.Store(false)
		c.setFormat(0)
	}()
	for {
		c.setFormat(c.clusterFormat(ctx))
		c.formatKnown.Store(true)
		if !sleep(ctx, formatPoll) {
			return
		}
	}
}

// setFormat changes the format this leader writes. Lowering it waits for
// commits that checked the old one (commit), so no entry encoded for a
// format is handed to raft after the leader stopped writing it.
func (c *Cluster) setFormat(f int) {
	if f < c.logFormat() {
		c.formatMu.Lock()
		defer c.formatMu.Unlock()
	}
	if prev := c.format.Swap(int32(f)); int(prev) != f {
		c.log.Info("log format", "format", f)
	}
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
		lowest = min(lowest, n.LogFormat)
	}
	return lowest, true
}

func (c *Cluster) clusterFormat(ctx context.Context) int {
	servers, err := c.Servers()
	if err != nil {
		return 0
	}
	lowest := fsm.LogFormat
	for _, s := range servers {
		if string(s.ID) == c.cfg.NodeID {
			continue
		}
		n, err := c.fsm.Node(string(s.ID))
		if err != nil {
			return 0
		}
		var out formatReply
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		err = c.post(rctx, "https://"+n.APIAddr+pathFormat, []byte("{}"), &out)
		cancel()
		switch {
		case errors.Is(err, errUnknownPath):
			c.log.Debug("log format: server predates the question", "server", s.ID)
			return 0
		case err != nil:
			// Down, paused or cut off: the format it announced, so an
			// outage does not turn off what every server reads. Only a
			// server running an older release again (a downgrade, which
			// is not supported) could be wrong-footed by this.
			c.log.Debug("log format: server did not answer; taking the format it announced", "server", s.ID, "format", n.LogFormat, "err", err)
			out.Format = n.LogFormat
		case out.Format > n.LogFormat:
			c.healFormat(ctx, *n, out.Format)
		}
		lowest = min(lowest, out.Format)
	}
	return lowest
}

// healFormat records the format a server answered in the node table where
// it is missing: a node of an earlier release applies a server's
// announcement without the format (it does not know the field), and after
// its upgrade it would otherwise count that server as format 0 while the
// server is unreachable.
func (c *Cluster) healFormat(ctx context.Context, n fsm.Node, format int) {
	n.LogFormat = format
	if err := c.propose(ctx, fsm.CmdNodeUpsert, n); err != nil {
		c.log.Debug("log format: could not record a server's format", "server", n.ID, "err", err)
	}
}

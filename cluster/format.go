package cluster

import (
	"context"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// The log format gate. A binary reads log formats up to fsm.LogFormat and
// panics on a newer entry (it must: skipping it would diverge). So the
// leader writes batch entries and binary envelopes only while every server
// of the configuration says it reads them; a server that does not answer,
// or predates the question (404), counts as format 0: JSON envelopes, one
// per entry. A rolling upgrade may then go in any order, and a leader never
// needs to know which release its followers run. (Downgrading a node once
// the newer format is in the log is not supported.)

const formatPoll = 2 * time.Second

type formatReply struct {
	Format int `json:"format"`
}

// logFormat is the format this leader writes now.
func (c *Cluster) logFormat() int { return int(c.format.Load()) }

// formatLoop, while this node leads, keeps c.format at the lowest format
// any server of the configuration reads.
func (c *Cluster) formatLoop(ctx context.Context) {
	c.format.Store(0) // until every server has answered
	defer func() {    // and from the start in a later term
		c.formatKnown.Store(false)
		c.format.Store(0)
	}()
	for {
		f := c.clusterFormat(ctx)
		if prev := c.format.Swap(int32(f)); int(prev) != f {
			c.log.Info("log format", "format", f)
		}
		c.formatKnown.Store(true)
		if !sleep(ctx, formatPoll) {
			return
		}
	}
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
		if err != nil {
			c.log.Debug("log format: server counts as format 0", "server", s.ID, "err", err)
			return 0
		}
		lowest = min(lowest, out.Format)
	}
	return lowest
}

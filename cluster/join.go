package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/backoff"
)

type joinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// LogFormat is the newest log format the joining binary reads;
	// releases before it sent none (0).
	LogFormat int `json:"log_format"`
}

// joinLoop asks the configured members to add this node until one of them
// succeeds. It runs on every start: a member that is already in the
// configuration with the same address is a no-op.
func (c *Cluster) joinLoop() {
	defer c.wg.Done()
	body, _ := json.Marshal(joinRequest{ID: c.cfg.NodeID, RaftAddr: string(c.transport.LocalAddr()), LogFormat: fsm.LogFormat})
	b := backoff.New(100*time.Millisecond, 5*time.Second)
	// Joining takes a node certificate.
	select {
	case <-c.tls.ready:
	case <-c.ctx.Done():
		return
	}
	for {
		for _, base := range c.cfg.Join {
			ctx, cancel := context.WithTimeout(c.ctx, c.cfg.HoldTimeout+5*time.Second)
			var out struct{}
			err := c.post(ctx, strings.TrimSuffix(base, "/")+pathJoin, body, &out)
			cancel()
			if err == nil {
				c.log.Info("joined cluster", "via", base)
				return
			}
			if c.ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrForbidden) {
				c.log.Error("join refused: this node's certificate is not accepted", "via", base)
			} else {
				c.log.Warn("join failed, will retry", "via", base, "err", err)
			}
		}
		if !b.Wait(c.ctx) {
			return
		}
	}
}

// join adds a voter, through the leader.
func (c *Cluster) join(ctx context.Context, req joinRequest) error {
	body, _ := json.Marshal(req)
	var out struct{}
	return callLeader(ctx, c, pathJoin, body, &out, func(ctx context.Context) error {
		if c.raft.State() != raft.Leader {
			return errRetry{ErrNotLeader}
		}
		servers, err := c.Servers()
		if err != nil {
			return translate(err)
		}
		for _, s := range servers {
			if string(s.ID) == req.ID && string(s.Address) == req.RaftAddr && s.Suffrage == raft.Voter {
				return nil
			}
		}
		// A binary that cannot read what the log holds, or what the leader
		// writes now, would panic on an entry: it is not added (nor does
		// it start: fsm.Open). formatMu keeps the format from rising
		// until the joiner is in the configuration the leader asks.
		c.formatMu.Lock()
		defer c.formatMu.Unlock()
		if have := max(c.fsm.HighestLogFormat(), c.logFormat()); req.LogFormat < have {
			return errBadRPC{fmt.Errorf("node %s reads log formats up to %d, and the cluster writes format %d: upgrade its binary before it joins", req.ID, req.LogFormat, have)}
		}
		c.log.Info("adding voter", "id", req.ID, "raft", req.RaftAddr)
		return translate(c.raft.AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.RaftAddr), 0, c.cfg.HoldTimeout).Error())
	})
}

package cluster

import (
	"context"
	"encoding/json"
	"errors"
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

// join adds a server, through the leader: a voter, or with gossip a
// non-voter that autopilot promotes once it is stable.
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
			// Present at that address: nothing to do (a non-voter under
			// autopilot is promoted in its time).
			if string(s.ID) == req.ID && string(s.Address) == req.RaftAddr && (s.Suffrage == raft.Voter || c.pilot != nil) {
				return nil
			}
		}
		err = c.addServer(req.ID, req.RaftAddr, req.LogFormat)
		if errors.Is(err, ErrLogFormat) || errors.Is(err, ErrAddressInUse) {
			return errBadRPC{err}
		}
		return err
	})
}

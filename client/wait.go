package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/quorumca/quorumca/internal/backoff"
)

// Waiting on the cluster, for what replaces servers one at a time (an
// auto-scaling group's lifecycle hooks, a rolling restart): a new server is
// in service only once it has stayed ready, and a server is stopped only
// while the others keep a healthy quorum without it.

// WaitReady returns once the node at the client's first address has been
// ready (Ready is nil, or an error accept takes) at every check, every
// interval, for stable without a break. note, if set, hears every reason
// the node gave for not being ready. It fails when ctx ends.
func (c *Client) WaitReady(ctx context.Context, stable, interval time.Duration, accept func(error) bool, note func(error)) error {
	var since time.Time // start of the current ready streak; zero: none
	var last error
	for {
		err := c.Ready(ctx)
		if err != nil && accept != nil && accept(err) {
			err = nil
		}
		switch {
		case err == nil && since.IsZero():
			since = time.Now()
		case err != nil:
			since = time.Time{}
			if note != nil && (last == nil || err.Error() != last.Error()) {
				note(err)
			}
		}
		last = err
		if !since.IsZero() && time.Since(since) >= stable {
			return nil
		}
		if !backoff.Sleep(ctx, interval) {
			return fmt.Errorf("not ready for %v: %w (last: %v)", stable, ctx.Err(), last)
		}
	}
}

// LeaderHealth is the leader's /v1/health, which alone carries autopilot's
// view: asked of any of the client's addresses, then of the leader's API
// address if that node does not lead.
func (c *Client) LeaderHealth(ctx context.Context) (*Health, error) {
	h, err := c.Health(ctx)
	if err != nil || h.Autopilot != nil || h.RaftState == "Leader" {
		return h, err
	}
	if h.LeaderAPI == "" {
		return nil, fmt.Errorf("node %s knows no leader", h.Node)
	}
	var lh Health
	if err := c.once(ctx, "GET", "https://"+h.LeaderAPI+"/v1/health", nil, false, &lh); err != nil {
		return nil, fmt.Errorf("the leader %s at %s: %w", h.Leader, h.LeaderAPI, err)
	}
	return &lh, nil
}

// QuorumWithout is nil when the servers other than id hold a healthy
// quorum of the voters in the leader's view h, so that stopping id (or
// having stopped it) leaves a cluster that commits; otherwise it says what
// is missing. h must be the leader's health (LeaderHealth).
func (h *Health) QuorumWithout(id string) error {
	if h.Autopilot == nil {
		return errors.New("no view of the servers' health (the node asked is not a leader of a gossip cluster, or has not looked yet)")
	}
	voters, healthy := 0, 0
	var sick []string
	for _, s := range h.Autopilot.Servers {
		if s.RaftState != "leader" && s.RaftState != "voter" {
			continue
		}
		voters++
		switch {
		case s.ID == id:
		case s.Healthy:
			healthy++
		default:
			sick = append(sick, s.ID)
		}
	}
	if quorum := voters/2 + 1; healthy < quorum {
		return fmt.Errorf("without %s, %d of %d voters are healthy, below a quorum of %d (not healthy: %s)",
			id, healthy, voters, quorum, strings.Join(sick, ", "))
	}
	return nil
}

// Healthy reports whether the leader's view h judges server id healthy.
func (h *Health) Healthy(id string) bool {
	if h.Autopilot == nil {
		return false
	}
	for _, s := range h.Autopilot.Servers {
		if s.ID == id {
			return s.Healthy
		}
	}
	return false
}

// WaitQuorumWithout returns once QuorumWithout(id) holds in the leader's
// view, checking every interval; note hears each new reason it does not.
func (c *Client) WaitQuorumWithout(ctx context.Context, id string, interval time.Duration, note func(error)) error {
	return c.WaitLeaderHealth(ctx, interval, func(h *Health) error { return h.QuorumWithout(id) }, note)
}

// WaitLeaderHealth returns once check passes on the leader's health,
// checking every interval; note hears each new reason it does not.
func (c *Client) WaitLeaderHealth(ctx context.Context, interval time.Duration, check func(*Health) error, note func(error)) error {
	var last error
	for {
		h, err := c.LeaderHealth(ctx)
		if err == nil {
			err = check(h)
		}
		if err == nil {
			return nil
		}
		if note != nil && (last == nil || err.Error() != last.Error()) {
			note(err)
		}
		last = err
		// Ask the next address next time: the one asked may hang (an
		// impaired instance) or know no leader, which Do does not retry
		// elsewhere.
		c.next.Add(1)
		if !backoff.Sleep(ctx, interval) {
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		}
	}
}

package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/quorumca/quorumca/fsm"
)

// Propagate waits until every member of the Raft configuration has applied
// everything the leader had committed when Propagate was called, giving
// each at most propagateTimeout. It is for rare writes whose effect must be
// visible on every node when the call returns (a revocation); members that
// do not answer in time are named in the error, which callers log: they are
// down or cut off, and a load balancer's readiness check takes them out.
func (c *Cluster) Propagate(ctx context.Context) error {
	var target indexReply
	var err error
	if target.Index, err = c.reads.index(ctx); err != nil {
		return err
	}
	servers, err := c.Servers()
	if err != nil {
		return translate(err)
	}
	body, _ := json.Marshal(target)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, cancel := context.WithTimeout(ctx, propagateTimeout)
			defer cancel()
			var err error
			if string(s.ID) == c.cfg.NodeID {
				err = c.fsm.WaitApplied(wctx, target.Index)
			} else {
				err = c.waitRemote(wctx, string(s.ID), body)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", s.ID, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) waitRemote(ctx context.Context, id string, body []byte) error {
	n, err := c.fsm.Node(id)
	if errors.Is(err, fsm.ErrNotFound) {
		return errors.New("address not known yet")
	}
	if err != nil {
		return err
	}
	var out struct{}
	return c.post(ctx, "https://"+n.APIAddr+pathWait, body, &out)
}

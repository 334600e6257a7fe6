package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptrace"
	"slices"
	"sync"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// Propagate runs on the leader, which knows who is alive: it waits for the
// members it is in contact with (contact.go), each for as long as it stays
// in contact, up to propagateTimeout. A paused member is then not waited
// for, or for about a heartbeat timeout if it paused a moment ago, rather
// than the RPC transport's 2 s handshake timeout.
//
// Skipping a member is safe because the wait is not what keeps a node from
// serving a stale revocation status: every node confirms with the leader
// through a read index before it serves one (that check is made apart from
// this wait). The wait only makes a change visible everywhere the moment
// the caller is answered, and says where it is.

const pathPropagate = "/v1/internal/propagate"

// errNotInContact: the leader has not heard from the member within a
// heartbeat timeout.
var errNotInContact = errors.New("not in contact with the leader")

// propagateReply says which members confirmed they applied the read index.
type propagateReply struct {
	Confirmed   []string          `json:"confirmed"`
	Unconfirmed map[string]string `json:"unconfirmed,omitempty"` // member: why
}

// Propagate waits until the members alive in the leader's view have applied
// everything the leader had committed when Propagate was called. It returns
// the members that confirmed and those that did not (down, paused, cut off
// or behind), and an error naming the latter, which callers log: a load
// balancer's readiness check takes such members out.
func (c *Cluster) Propagate(ctx context.Context) (confirmed, unconfirmed []string, err error) {
	var out propagateReply
	err = callLeader(ctx, c, pathPropagate, []byte("{}"), &out, func(ctx context.Context) error {
		var err error
		out, err = c.propagateLocal(ctx, c.inContact)
		return err
	})
	if errors.Is(err, errUnknownPath) {
		// A leader from before this RPC: wait for every member from
		// here, as that release did.
		out, err = c.propagateLocal(ctx, func(string) bool { return true })
	}
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for id, why := range out.Unconfirmed {
		unconfirmed = append(unconfirmed, id)
		errs = append(errs, fmt.Errorf("%s: %s", id, why))
	}
	slices.Sort(out.Confirmed)
	slices.Sort(unconfirmed)
	return out.Confirmed, unconfirmed, errors.Join(errs...)
}

// propagateLocal waits for every member of the configuration that alive
// accepts to apply a read index obtained now.
func (c *Cluster) propagateLocal(ctx context.Context, alive func(id string) bool) (propagateReply, error) {
	var out propagateReply
	index, err := c.reads.index(ctx)
	if err != nil {
		return out, err
	}
	servers, err := c.Servers()
	if err != nil {
		return out, translate(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range servers {
		id := string(s.ID)
		wg.Go(func() {
			err := c.confirm(ctx, id, index, alive)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				out.Confirmed = append(out.Confirmed, id)
				return
			}
			if out.Unconfirmed == nil {
				out.Unconfirmed = map[string]string{}
			}
			out.Unconfirmed[id] = err.Error()
		})
	}
	wg.Wait()
	return out, nil
}

// confirm waits until member id has applied index, while alive accepts it.
func (c *Cluster) confirm(ctx context.Context, id string, index uint64, alive func(string) bool) error {
	if !alive(id) {
		return errNotInContact
	}
	ctx, cancel := context.WithTimeout(ctx, propagateTimeout)
	defer cancel()
	if id == c.cfg.NodeID {
		return c.fsm.WaitApplied(ctx, index)
	}
	body, _ := json.Marshal(indexReply{Index: index})
	done := make(chan error, 1)
	go func() { done <- c.waitRemote(ctx, id, body) }()
	tick := time.NewTicker(c.heartbeatTimeout() / 4)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if !alive(id) {
				return errNotInContact // the deferred cancel ends the call
			}
		}
	}
}

// waitRemote asks member id to answer once it has applied the index in
// body. Getting a connection to it is bounded by a heartbeat timeout: a
// member whose Raft answers but whose API is wedged (accepts, never
// handshakes) costs that, not the RPC transport's 2 s dial and handshake
// bounds, which suit forwarding to a leader rather than a wait on every node.
func (c *Cluster) waitRemote(ctx context.Context, id string, body []byte) error {
	n, err := c.fsm.Node(id)
	if errors.Is(err, fsm.ErrNotFound) {
		return errors.New("address not known yet")
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	connect := c.heartbeatTimeout()
	slow := fmt.Errorf("no connection within %s", connect)
	timer := time.AfterFunc(connect, func() { cancel(slow) })
	defer timer.Stop()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { timer.Stop() }})
	var out struct{}
	if err := c.post(ctx, "https://"+n.APIAddr+pathWait, body, &out); err != nil {
		if cause := context.Cause(ctx); cause == slow {
			return cause
		}
		return err
	}
	return nil
}

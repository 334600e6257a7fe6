package cluster

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// The leader's view of who is alive. Raft's leader knows when each
// follower last answered it (its lease check counts on it), but
// hashicorp/raft v1.8.0 does not export that per follower: LastContact and
// Stats describe the leader as seen by a follower. So the transport notes
// it on the way: every AppendEntries answered, heartbeats included (ten per
// heartbeat timeout), marks its follower as heard from.

// contactTransport is Raft's transport, noting when each peer last
// answered an AppendEntries, and what it answered.
type contactTransport struct {
	noPipeline
	last sync.Map // raft.ServerID -> *peerContact

	gate   sync.RWMutex // held by each heartbeat Raft handles (SetHeartbeatHandler)
	closed bool
}

// SetHeartbeatHandler gates Raft's heartbeat fast path. It runs on the
// transport's goroutines, not Raft's, so Raft's shutdown does not wait for
// it; one in flight when the stores close would save a new term to a
// closed store, and Raft panics on that. Once stopHeartbeats returns, none
// is running and later ones go unanswered (the transport is closed first).
func (t *contactTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	t.noPipeline.SetHeartbeatHandler(func(rpc raft.RPC) {
		t.gate.RLock()
		defer t.gate.RUnlock()
		if !t.closed {
			cb(rpc)
		}
	})
}

// stopHeartbeats waits for a heartbeat being handled and drops later ones.
func (t *contactTransport) stopHeartbeats() {
	t.gate.Lock()
	t.closed = true
	t.gate.Unlock()
}

// peerContact is a peer's last answer to an AppendEntries: when, and the
// term and last log index it reported. Autopilot judges a server's health
// by these (autopilot.go), so the leader needs no RPC of its own for them.
type peerContact struct {
	at          atomic.Int64 // unix nanoseconds
	term, index atomic.Uint64
}

// errWrongPeer: a server other than the one addressed answered.
var errWrongPeer = errors.New("raft: answered by another server")

// answeredBy fails an RPC that a server other than id answered. Another
// server may sit at id's address (a replacement given the private address
// that id left moments ago, while id is only away and keeps its place):
// its answers are not id's. Counted as id's, its vote would count twice
// (its own and id's: two of three from one process) and its replies would
// keep id "heard" and unremovable. Raft's header names the responder; an
// answer without one (no release of quorumca sends none) is taken.
func answeredBy(id raft.ServerID, h raft.RPCHeader, err error) error {
	if err == nil && len(h.ID) > 0 && raft.ServerID(h.ID) != id {
		return fmt.Errorf("%w: %s answered for %s", errWrongPeer, h.ID, id)
	}
	return err
}

func (t *contactTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	err := t.noPipeline.RequestVote(id, target, args, resp)
	return answeredBy(id, resp.RPCHeader, err)
}

func (t *contactTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	err := t.noPipeline.RequestPreVote(id, target, args, resp)
	return answeredBy(id, resp.RPCHeader, err)
}

func (t *contactTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	err := t.noPipeline.InstallSnapshot(id, target, args, resp, data)
	return answeredBy(id, resp.RPCHeader, err)
}

func (t *contactTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	err := t.noPipeline.TimeoutNow(id, target, args, resp)
	return answeredBy(id, resp.RPCHeader, err)
}

func (t *contactTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.noPipeline.AppendEntries(id, target, args, resp)
	if err = answeredBy(id, resp.RPCHeader, err); err == nil {
		v, ok := t.last.Load(id)
		if !ok {
			v, _ = t.last.LoadOrStore(id, new(peerContact))
		}
		p := v.(*peerContact)
		// LastLog is the follower's last index before it took the
		// entries; once it took them, it holds up to the last one.
		index := resp.LastLog
		if n := len(args.Entries); resp.Success && n > 0 {
			index = max(index, args.Entries[n-1].Index)
		}
		p.term.Store(resp.Term)
		p.index.Store(index)
		p.at.Store(time.Now().UnixNano())
	}
	return err
}

// lastContact is when id last answered this node's AppendEntries; zero if
// it never did.
func (t *contactTransport) lastContact(id raft.ServerID) time.Time {
	at, _, _ := t.peer(id)
	return at
}

// peer is id's last answer: when (zero if it never answered), its term
// and its last log index.
func (t *contactTransport) peer(id raft.ServerID) (at time.Time, term, index uint64) {
	v, ok := t.last.Load(id)
	if !ok {
		return time.Time{}, 0, 0
	}
	p := v.(*peerContact)
	return time.Unix(0, p.at.Load()), p.term.Load(), p.index.Load()
}

// heartbeatTimeout is Raft's: a follower that hears nothing from its
// leader for this long calls an election.
func (c *Cluster) heartbeatTimeout() time.Duration {
	return c.raft.ReloadableConfig().HeartbeatTimeout
}

// inContact reports whether this node, as leader, heard from member id
// within a heartbeat timeout: the silence after which Raft itself gives up
// on a leader. This node is always in contact with itself.
func (c *Cluster) inContact(id string) bool {
	if id == c.cfg.NodeID {
		return true
	}
	return time.Since(c.contact.lastContact(raft.ServerID(id))) < c.heartbeatTimeout()
}

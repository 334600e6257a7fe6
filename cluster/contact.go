package cluster

import (
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
// answered an AppendEntries.
type contactTransport struct {
	noPipeline
	last sync.Map // raft.ServerID -> *atomic.Int64, unix nanoseconds
}

func (t *contactTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.noPipeline.AppendEntries(id, target, args, resp)
	if err == nil {
		v, ok := t.last.Load(id)
		if !ok {
			v, _ = t.last.LoadOrStore(id, new(atomic.Int64))
		}
		v.(*atomic.Int64).Store(time.Now().UnixNano())
	}
	return err
}

// lastContact is when id last answered this node's AppendEntries; zero if
// it never did.
func (t *contactTransport) lastContact(id raft.ServerID) time.Time {
	if v, ok := t.last.Load(id); ok {
		return time.Unix(0, v.(*atomic.Int64).Load())
	}
	return time.Time{}
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

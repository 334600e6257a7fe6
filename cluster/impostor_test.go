package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/freeport"
	"github.com/quorumca/quorumca/internal/testwait"
)

// impostor is a gossip member that holds the gossip key and says what it
// likes about itself.
type impostor struct{ meta []byte }

func (i impostor) NodeMeta(int) []byte           { return i.meta }
func (impostor) NotifyMsg([]byte)                {}
func (impostor) GetBroadcasts(int, int) [][]byte { return nil }
func (impostor) LocalState(bool) []byte          { return nil }
func (impostor) MergeRemoteState([]byte, bool)   {}

// gossipImpostor joins c's gossip pool as name, announcing m.
func gossipImpostor(t *testing.T, key []byte, name string, m meta, c *Cluster) {
	t.Helper()
	b, _ := json.Marshal(m)
	mc := memberlist.DefaultLocalConfig()
	mc.Name = name
	host, port, err := splitHostPort(freeport.For(t))
	if err != nil {
		t.Fatal(err)
	}
	mc.BindAddr, mc.BindPort, mc.AdvertiseAddr, mc.AdvertisePort = host, port, host, port
	mc.SecretKey, mc.Delegate, mc.LogOutput = key, impostor{meta: b}, io.Discard
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Shutdown() })
	if _, err := ml.Join([]string{c.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
}

// A gossip member cannot take a live voter's place: neither by
// announcing the voter's Raft address under an id of its own (autopilot
// removes any other server at the address of one it adds), nor by
// announcing the voter's id with an address of its own (which moves the
// voter there).
func TestAGossipMemberCannotTakeALiveVotersPlace(t *testing.T) {
	g := newGossipTest(t)
	members, leader := threeByGossip(t, g, nil)
	victim := aFollower(members, leader)
	id, addr := victim.cfg.NodeID, string(victim.transport.LocalAddr())
	gossipImpostor(t, g.key, "mallory", meta{ID: "mallory", Raft: addr, Clustered: true, LogFormat: fsm.LogFormat}, leader)
	gossipImpostor(t, g.key, "mallet", meta{ID: id, Raft: freeport.For(t), Clustered: true, LogFormat: fsm.LogFormat}, leader)
	testwait.For(t, 20*time.Second, "the leader to see the impostors in gossip", func() bool {
		return leader.gossip.ml.NumMembers() == 5
	})
	// The leader looks at every live member on each pass, by id: once a
	// member after them is in, it has looked at both.
	g.start("zz-later", func(gc *GossipConfig) { gc.BootstrapExpect = 0 })
	testwait.For(t, 20*time.Second, "a later member to be added", func() bool { return leader.isServer("zz-later") })

	servers, err := leader.Servers()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range servers {
		switch {
		case string(s.ID) == id:
			found = true
			if string(s.Address) != addr || s.Suffrage != raft.Voter {
				t.Errorf("the victim is now %v at %s, want a voter at %s", s.Suffrage, s.Address, addr)
			}
		case string(s.Address) == addr:
			t.Errorf("%s was added at the victim's address", s.ID)
		}
	}
	if !found {
		t.Errorf("the live voter %s was removed: %+v", id, servers)
	}
}

// A voter that gossip says left while Raft still hears from it is not
// removed: any holder of the gossip key can send the message memberlist
// takes as a member's leave (a death notice from the member itself).
func TestAForgedLeaveDoesNotRemoveAVoter(t *testing.T) {
	g := newGossipTest(t)
	members, leader := threeByGossip(t, g, nil)
	victim := aFollower(members, leader)
	id := victim.cfg.NodeID
	b, _ := json.Marshal(meta{ID: id, Raft: string(victim.transport.LocalAddr()), Clustered: true, LogFormat: fsm.LogFormat})
	// What memberlist hands the leader for the forged notice.
	leader.gossip.update(&memberlist.Node{Name: id, Meta: b, State: memberlist.StateLeft}, false)
	deadline := time.Now().Add(3 * time.Second) // twelve of the leader's removal rounds
	for time.Now().Before(deadline) {
		if s, ok := suffrage(leader, id); !ok || s != raft.Voter {
			t.Fatalf("a live voter was removed on a forged leave (in configuration: %v, %v)", ok, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The join RPC of a gossip cluster goes through the same gate: a node
// that joins at a live voter's Raft address is refused, and the voter
// stays.
func TestAJoinAtALiveVotersAddressIsRefused(t *testing.T) {
	g := newGossipTest(t)
	members, leader := threeByGossip(t, g, nil)
	victim := aFollower(members, leader)
	id, addr := victim.cfg.NodeID, string(victim.transport.LocalAddr())
	body := fmt.Sprintf(`{"id":"thief","raft_addr":%q,"log_format":%d}`, addr, fsm.LogFormat)
	var out struct{}
	err := victim.post(context.Background(), "https://"+leader.cfg.APIAdvertise+pathJoin, []byte(body), &out)
	if err == nil {
		t.Error("a join at a live voter's address was accepted")
	}
	if s, ok := suffrage(leader, id); !ok || s != raft.Voter {
		t.Errorf("the voter at that address is now %v (in configuration: %v)", s, ok)
	}
	if leader.isServer("thief") {
		t.Error("the node that joined at a live voter's address was added")
	}
}

// aFollower is a member that does not lead.
func aFollower(members []*Cluster, leader *Cluster) *Cluster {
	for _, m := range members {
		if m != leader {
			return m
		}
	}
	return nil
}

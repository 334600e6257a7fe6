package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
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

// foreignNodeAPI serves the format question with a node certificate for
// id from another cluster's CA.
func foreignNodeAPI(t *testing.T, id string) string {
	t.Helper()
	n, _ := testNodeTLS(t, id)
	k, err := newNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := n.issue(context.Background(), id, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"format":%d}`, fsm.LogFormat)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: k}}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// A holder of the gossip key who announces a server of its own is not
// added to the configuration, neither as a voter nor as a non-voter,
// unless its API shows a node certificate of this cluster for the id it
// announces: not with another cluster's certificate for that id, not by
// naming a live node's API (whose certificate is for another id), not
// with no API at all. A real server that joins after them is added.
func TestAGossipMemberWithoutANodeCertificateIsNotAdded(t *testing.T) {
	g := newGossipTest(t)
	members, leader := threeByGossip(t, g, nil)
	follower := aFollower(members, leader)
	impostors := map[string]string{
		"mallory": foreignNodeAPI(t, "mallory"),
		"mallet":  follower.cfg.APIAdvertise,
		"malaise": freeport.For(t),
	}
	for id, api := range impostors {
		gossipImpostor(t, g.key, id, meta{ID: id, Raft: freeport.For(t), API: api, Clustered: true, LogFormat: fsm.LogFormat}, leader)
	}
	testwait.For(t, 20*time.Second, "the leader to see the impostors in gossip", func() bool {
		return leader.gossip.ml.NumMembers() == 6
	})
	g.start("zz-later", func(gc *GossipConfig) { gc.BootstrapExpect = 0 })
	testwait.For(t, 20*time.Second, "a later member to be added", func() bool { return leader.isServer("zz-later") })
	// The leader has looked at the impostors at least as often as at the
	// later member, which proved itself on the first try.
	for id := range impostors {
		if _, ok := suffrage(leader, id); ok {
			t.Errorf("%s, with the gossip key only, was added to the configuration", id)
		}
	}
	for _, m := range leader.gossip.snapshot() {
		if impostors[m.ID] != "" && m.proven {
			t.Errorf("%s counts as proven", m.ID)
		}
	}
}

// Members that hold only the gossip key do not count towards
// bootstrap_expect, whatever they announce: two that sort first would
// otherwise be two of the three voters the servers bootstrap with (no
// quorum, ever), and one that says it is clustered would keep the servers
// from bootstrapping at all.
func TestGossipImpostorsDoNotCountTowardsBootstrapExpect(t *testing.T) {
	g := newGossipTest(t)
	first := g.start("n1", nil)
	for _, id := range []string{"a1", "a2"} {
		gossipImpostor(t, g.key, id, meta{ID: id, Raft: freeport.For(t), API: freeport.For(t), LogFormat: fsm.LogFormat}, first)
	}
	gossipImpostor(t, g.key, "a0", meta{ID: "a0", Raft: freeport.For(t), API: foreignNodeAPI(t, "a0"), Clustered: true, LogFormat: fsm.LogFormat}, first)
	members := []*Cluster{first, g.start("n2", nil), g.start("n3", nil)}
	var leader *Cluster
	testwait.For(t, 30*time.Second, "three voters and a leader", func() bool {
		for _, m := range members {
			if m.IsLeader() {
				leader = m
			}
		}
		return leader != nil && leader.Status().Voters == 3
	})
	servers, err := leader.Servers()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.ID[0] == 'a' {
			t.Errorf("the impostor %s is in the configuration", s.ID)
		}
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

package cluster

import (
	"context"
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/freeport"
	"github.com/quorumca/quorumca/internal/testwait"
)

// gossipTest starts members that find each other by gossip: the first
// member's gossip address is every later member's retry_join.
type gossipTest struct {
	*upgradeCluster
	key  []byte
	seed string
}

func newGossipTest(t *testing.T) *gossipTest {
	key := make([]byte, 32)
	rand.Read(key)
	return &gossipTest{upgradeCluster: newUpgradeCluster(t), key: key}
}

// start starts a member with gossip adjusted by mutate. One with no
// retry_join (set it to nil in mutate) stays alone until it joins itself.
func (g *gossipTest) start(id string, mutate func(*GossipConfig)) *Cluster {
	addr := freeport.For(g.t)
	gc := GossipConfig{Bind: addr, Key: g.key, Fast: true, BootstrapExpect: 3, Voters: 3,
		DeadServerCleanup: time.Second, Stabilization: 2 * time.Second}
	if g.seed == "" {
		g.seed = addr
	} else {
		gc.RetryJoin = []string{g.seed}
	}
	if mutate != nil {
		mutate(&gc)
	}
	c, _, _ := g.memberWith(id, false, nil, nil, func(cfg *Config) { cfg.Gossip = &gc })
	return c
}

// suffrage is id's suffrage in c's configuration; false if it is none.
func suffrage(c *Cluster, id string) (raft.ServerSuffrage, bool) {
	servers, _ := c.Servers()
	for _, s := range servers {
		if string(s.ID) == id {
			return s.Suffrage, true
		}
	}
	return 0, false
}

// loneGossipLeader bootstraps a one-server gossip cluster and writes an
// entry of the binary log format through it.
func loneGossipLeader(t *testing.T, g *gossipTest) *Cluster {
	t.Helper()
	leader, _, _ := g.memberWith("leader", true, nil, nil, func(cfg *Config) {
		cfg.Gossip = &GossipConfig{Bind: freeport.For(t), Key: g.key, Fast: true, Voters: 3,
			DeadServerCleanup: time.Second, Stabilization: 2 * time.Second}
	})
	testwait.For(t, 20*time.Second, "the member to lead", leader.IsLeader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leader.Apply(ctx, bigTokenCreate(t, "binary", 10)); err != nil {
		t.Fatal(err)
	}
	return leader
}

// threeByGossip forms a cluster of three members by bootstrap_expect and
// returns its members and the one that leads.
func threeByGossip(t *testing.T, g *gossipTest, mutate func(*GossipConfig)) ([]*Cluster, *Cluster) {
	t.Helper()
	members := []*Cluster{g.start("n1", mutate), g.start("n2", mutate), g.start("n3", mutate)}
	var leader *Cluster
	testwait.For(t, 30*time.Second, "three voters and a leader", func() bool {
		for _, m := range members {
			if m.IsLeader() {
				leader = m
			}
		}
		if leader == nil {
			return false
		}
		st := leader.Status()
		return st.Voters == 3 && st.NonVoters == 0
	})
	return members, leader
}

// A server that joins by gossip comes in as a non-voter and is promoted
// once autopilot has seen it healthy for the stabilization time; the
// leader's /v1/health shows how autopilot judges each server.
func TestANewServerIsPromotedAfterStabilization(t *testing.T) {
	g := newGossipTest(t)
	voters5 := func(gc *GossipConfig) { gc.Voters = 5 }
	members, leader := threeByGossip(t, g, voters5)
	members = append(members, g.start("n4", voters5))
	// The leader of the moment: with test timings under load, leadership
	// may move, and only the leader has autopilot's view.
	current := func() *Cluster {
		for _, m := range members {
			if m.IsLeader() {
				return m
			}
		}
		return leader
	}

	testwait.For(t, 30*time.Second, "n4 to come in as a non-voter", func() bool {
		s, ok := suffrage(leader, "n4")
		if ok && s != raft.Nonvoter {
			t.Fatalf("n4 came in as %v, want a non-voter first", s)
		}
		return ok
	})
	// Follow autopilot's view of n4 until it is a voter: the promotion
	// comes no sooner than the stabilization time after n4 became healthy.
	var stableSince time.Time
	var seenHealthy bool
	testwait.For(t, 30*time.Second, "n4 promoted to voter", func() bool {
		if s, _ := suffrage(leader, "n4"); s == raft.Voter {
			return true
		}
		if ap := current().Status().Autopilot; ap != nil {
			for _, srv := range ap.Servers {
				if srv.ID == "n4" && srv.Healthy && srv.RaftState == string(autopilot.RaftNonVoter) {
					seenHealthy, stableSince = true, srv.StableSince
				}
			}
		}
		return false
	})
	promoted := time.Now()
	if !seenHealthy {
		t.Fatal("autopilot never showed n4 healthy as a non-voter before its promotion")
	}
	if d := promoted.Sub(stableSince); d < 2*time.Second {
		t.Errorf("n4 was promoted %v after it became healthy, before the stabilization time (2s)", d)
	}
	testwait.For(t, 10*time.Second, "the leader's autopilot to see four live servers, four voters", func() bool {
		st := current().Status()
		if st.Autopilot == nil || len(st.Autopilot.Servers) != 4 || st.Voters != 4 {
			return false
		}
		for _, srv := range st.Autopilot.Servers {
			if srv.Status != string(autopilot.NodeAlive) {
				return false
			}
		}
		return true
	})
}

// A voter that dies is removed once it has been dead for
// dead_server_cleanup, the cluster keeps its quorum and writes, a
// non-voter takes its place, and the dead server's node certificates stay
// valid (it is presumed crashed, not hostile).
func TestADeadServerIsRemovedAndReplaced(t *testing.T) {
	g := newGossipTest(t)
	members, leader := threeByGossip(t, g, nil)
	g.start("n4", nil)
	testwait.For(t, 30*time.Second, "n4 to come in as a non-voter", func() bool {
		s, ok := suffrage(leader, "n4")
		return ok && s == raft.Nonvoter
	})
	var victim *Cluster
	for _, m := range members {
		if m != leader {
			victim = m
			break
		}
	}
	dead := victim.cfg.NodeID
	testwait.For(t, 20*time.Second, "the victim to announce itself", func() bool {
		_, err := leader.fsm.Node(dead)
		return err == nil
	})
	victim.Crash()

	testwait.For(t, 30*time.Second, "the dead voter removed and n4 promoted", func() bool {
		_, in := suffrage(leader, dead)
		s, _ := suffrage(leader, "n4")
		return !in && s == raft.Voter && leader.Status().Voters == 3
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leader.Apply(ctx, bigTokenCreate(t, "after-cleanup", 10)); err != nil {
		t.Fatalf("a write after the cleanup: %v", err)
	}
	if n, err := leader.fsm.Node(dead); err != nil || !n.RemovedAt.IsZero() {
		t.Errorf("the dead server's certificates were voided: %v %+v", err, n)
	}
}

// A server whose binary cannot read the log is not added when it joins by
// gossip, as a join by RPC is not (TestJoinOfABinaryThatCannotReadTheLogIsRefused);
// a server that can, joining after it, is; and once the first announces
// a binary that reads the log, it is added too.
func TestGossipJoinOfABinaryThatCannotReadTheLogIsRefused(t *testing.T) {
	g := newGossipTest(t)
	alone := func(gc *GossipConfig) { gc.BootstrapExpect, gc.RetryJoin = 0, nil }
	leader := loneGossipLeader(t, g)
	if h := leader.fsm.HighestLogFormat(); h < 1 {
		t.Fatalf("the log holds format %d, want binary entries", h)
	}

	// An elder announces what a release before the format question does
	// (no log_format: 0) before it joins the gossip pool.
	elder := g.start("elder", alone)
	announceFormat(elder, 0)
	if _, err := elder.gossip.ml.Join([]string{leader.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 20*time.Second, "the leader to see the elder alive in gossip", func() bool {
		for _, m := range leader.gossip.snapshot() {
			if m.ID == "elder" && m.alive {
				return true
			}
		}
		return false
	})
	// The leader looks at every live member on each pass: once a member
	// that joined later is in, it has looked at the elder too.
	g.start("later", func(gc *GossipConfig) { gc.BootstrapExpect, gc.RetryJoin = 0, []string{leader.GossipAddr()} })
	testwait.For(t, 20*time.Second, "the later member to be added", func() bool { return leader.isServer("later") })
	if leader.isServer("elder") {
		t.Fatal("a node that cannot read the log was added")
	}

	announceFormat(elder, fsm.LogFormat)
	testwait.For(t, 20*time.Second, "the upgraded elder to be added", func() bool { return leader.isServer("elder") })
}

// announceFormat makes c's gossip say its binary reads log formats up to f.
func announceFormat(c *Cluster, f int) {
	c.gossip.mu.Lock()
	c.gossip.self.LogFormat = f
	c.gossip.mu.Unlock()
	c.gossip.ml.UpdateNode(time.Second) // a slow broadcast: push-pull carries it too
}

// The promoter fills the voter count with non-voters stable for the
// whole stabilization time, the longest stable first.
func TestPromoterFillsTheVoterCount(t *testing.T) {
	now := time.Now()
	srv := func(state autopilot.RaftState, healthy bool, since time.Duration, status autopilot.NodeStatus) *autopilot.ServerState {
		return &autopilot.ServerState{State: state, Server: autopilot.Server{NodeStatus: status},
			Health: autopilot.ServerHealth{Healthy: healthy, StableSince: now.Add(-since)}}
	}
	s := &autopilot.State{
		Voters: []raft.ServerID{"a", "b"},
		Servers: map[raft.ServerID]*autopilot.ServerState{
			"a":       srv(autopilot.RaftLeader, true, time.Hour, autopilot.NodeAlive),
			"b":       srv(autopilot.RaftVoter, true, time.Hour, autopilot.NodeAlive),
			"young":   srv(autopilot.RaftNonVoter, true, time.Second, autopilot.NodeAlive),
			"old":     srv(autopilot.RaftNonVoter, true, time.Minute, autopilot.NodeAlive),
			"older":   srv(autopilot.RaftNonVoter, true, 2*time.Minute, autopilot.NodeAlive),
			"sick":    srv(autopilot.RaftNonVoter, false, time.Hour, autopilot.NodeAlive),
			"unknown": srv(autopilot.RaftNonVoter, true, time.Hour, autopilot.NodeUnknown),
		},
	}
	conf := &autopilot.Config{ServerStabilizationTime: 10 * time.Second}
	for voters, want := range map[int][]raft.ServerID{2: nil, 3: {"older"}, 5: {"older", "old"}} {
		p := &pilot{cfg: GossipConfig{Voters: voters}}
		got := p.CalculatePromotionsAndDemotions(conf, s)
		if len(got.Promotions) != len(want) || len(got.Demotions) != 0 || got.Leader != "" {
			t.Errorf("voters %d: %+v, want promotions %v", voters, got, want)
			continue
		}
		for i := range want {
			if got.Promotions[i] != want[i] {
				t.Errorf("voters %d: promotions %v, want %v", voters, got.Promotions, want)
			}
		}
	}
}

// Only servers that failed (gone, and silent over Raft, past
// dead_server_cleanup) are removed, never one only autopilot calls stale,
// and a voter only while a majority of the other voters lives.
func TestOnlyFailedServersAreRemovedAndNeverBelowQuorum(t *testing.T) {
	server := func(id string, st autopilot.NodeStatus) *autopilot.Server {
		return &autopilot.Server{ID: raft.ServerID(id), NodeStatus: st}
	}
	state := func(statuses map[string]autopilot.NodeStatus) *autopilot.State {
		s := &autopilot.State{Servers: map[raft.ServerID]*autopilot.ServerState{}}
		for id, st := range statuses {
			s.Voters = append(s.Voters, raft.ServerID(id))
			s.Servers[raft.ServerID(id)] = &autopilot.ServerState{State: autopilot.RaftVoter, Server: *server(id, st)}
		}
		return s
	}
	p := &pilot{c: &Cluster{cfg: Config{NodeID: "a"}, log: slog.New(slog.DiscardHandler)}}

	failed := &autopilot.FailedServers{
		StaleVoters: []raft.ServerID{"stale"}, StaleNonVoters: []raft.ServerID{"stale-nv"},
		FailedNonVoters: []*autopilot.Server{server("nv-failed", autopilot.NodeFailed), server("nv-recent", autopilot.NodeUnknown)},
		FailedVoters:    []*autopilot.Server{server("c", autopilot.NodeFailed)},
	}
	got := p.FilterFailedServerRemovals(nil, state(map[string]autopilot.NodeStatus{"a": autopilot.NodeAlive, "b": autopilot.NodeAlive, "c": autopilot.NodeFailed}), failed)
	if len(got.StaleVoters)+len(got.StaleNonVoters) != 0 {
		t.Errorf("servers gossip does not know would be removed: %+v", got)
	}
	if len(got.FailedNonVoters) != 1 || got.FailedNonVoters[0].ID != "nv-failed" {
		t.Errorf("non-voters removed: %+v, want nv-failed", got.FailedNonVoters)
	}
	if len(got.FailedVoters) != 1 {
		t.Errorf("a dead voter of three with the two others alive is kept: %+v", got.FailedVoters)
	}

	// Of five voters, two dead long and one dead recently: removing either
	// would leave two live voters of four.
	failed = &autopilot.FailedServers{FailedVoters: []*autopilot.Server{server("c", autopilot.NodeFailed), server("d", autopilot.NodeFailed)}}
	got = p.FilterFailedServerRemovals(nil, state(map[string]autopilot.NodeStatus{
		"a": autopilot.NodeAlive, "b": autopilot.NodeAlive, "c": autopilot.NodeFailed, "d": autopilot.NodeFailed, "e": autopilot.NodeUnknown,
	}), failed)
	if len(got.FailedVoters) != 0 {
		t.Errorf("dead voters removed below a live majority: %+v", got.FailedVoters)
	}
}

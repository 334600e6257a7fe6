package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/freeport"
	"github.com/quorumca/quorumca/internal/testwait"
)

// blackHole accepts connections and never answers on them.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// impostorAt is gossipImpostor bound to bind: a member that takes a name
// memberlist let go, from the address the name last had or another.
func impostorAt(t *testing.T, key []byte, bind, name string, m meta, join string) *memberlist.Memberlist {
	t.Helper()
	b, _ := json.Marshal(m)
	mc := memberlist.DefaultLocalConfig()
	mc.Name = name
	host, port, err := splitHostPort(bind)
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
	if _, err := ml.Join([]string{join}); err != nil {
		t.Fatal(err)
	}
	return ml
}

// gossipView is how c's gossip sees id: what it announces and whether
// it is alive.
func gossipView(c *Cluster, id string) (member, bool) {
	for _, m := range c.gossip.snapshot() {
		if m.ID == id {
			return m, true
		}
	}
	return member{}, false
}

// A member whose gossip name was let go (a forged leave: memberlist lets
// a left member come back from another address) is taken by a holder of
// the gossip key, who announces the member's own API, which shows the
// member's node certificate, and a Raft address of its own. The leader
// must not move the voter there.
func TestATakenGossipNameCannotMoveAVoterByNamingItsAPI(t *testing.T) {
	g := newGossipTest(t)
	members, leader := threeByGossip(t, g, nil)
	victim := aFollower(members, leader)
	id, addr := victim.cfg.NodeID, string(victim.transport.LocalAddr())
	// What a forged leave does, without forging one: the victim's
	// memberlist leaves; its Raft and its API run on.
	if err := victim.gossip.ml.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the leader to see the victim leave gossip", func() bool {
		m, ok := gossipView(leader, id)
		return ok && !m.alive
	})
	rogue, at := blackHole(t), freeport.For(t)
	impostorAt(t, g.key, at, id, meta{ID: id, Raft: rogue, API: victim.cfg.APIAdvertise, Clustered: true, LogFormat: fsm.LogFormat}, leader.GossipAddr())
	testwait.For(t, 10*time.Second, "the leader to take the impostor's announcement for the victim's", func() bool {
		m, ok := gossipView(leader, id)
		return ok && (m.Raft == rogue || m.next != nil && m.next.Raft == rogue)
	})
	deadline := time.Now().Add(4 * time.Second) // four proof rounds, sixteen of the leader's passes
	for time.Now().Before(deadline) {
		servers, err := leader.Servers()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range servers {
			if string(s.ID) == id && string(s.Address) != addr {
				t.Fatalf("the voter %s was moved to %s, the impostor's address", id, s.Address)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A forged announcement of a member's own addresses with a log format
// newer than its binary reads (its API says which it reads) does not let
// the member past the log format gate.
func TestAForgedLogFormatDoesNotPassTheGate(t *testing.T) {
	g := newGossipTest(t)
	alone := func(gc *GossipConfig) { gc.BootstrapExpect, gc.RetryJoin = 0, nil }
	leader := loneGossipLeader(t, g)
	// An elder: a binary from before the format question (it reads
	// format 0), announcing so.
	var isOld atomic.Bool
	isOld.Store(true)
	gc := GossipConfig{Bind: freeport.For(t), Key: g.key, Fast: true, Voters: 3, DeadServerCleanup: time.Second, Stabilization: 2 * time.Second}
	alone(&gc)
	elder, _, _ := g.memberWith("elder", false, nil, &isOld, func(cfg *Config) { cfg.Gossip = &gc })
	announceFormat(elder, 0)
	if _, err := elder.gossip.ml.Join([]string{leader.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 20*time.Second, "the leader to see the elder proven", func() bool {
		m, ok := gossipView(leader, "elder")
		return ok && m.alive && m.proven
	})
	// What memberlist hands the leader for a forged alive message: the
	// elder's addresses, a newer incarnation, and the newest log format.
	elder.gossip.mu.Lock()
	forged := elder.gossip.self
	elder.gossip.mu.Unlock()
	forged.LogFormat = fsm.LogFormat
	b, _ := json.Marshal(forged)
	leader.gossip.update(&memberlist.Node{Name: "elder", Meta: b, State: memberlist.StateAlive}, true)

	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if leader.isServer("elder") {
			t.Fatal("a node that reads log format 0 was added on a forged announcement of the newest format")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A server that dies is removed after dead_server_cleanup even if a
// holder of the gossip key takes its name meanwhile (memberlist forgets a
// dead member's name after a while, or takes it back at the same address
// with a newer incarnation): whether it announces addresses of its own,
// or the dead server's very announcement, proven while it lived.
func TestATakenNameDoesNotKeepADeadServer(t *testing.T) {
	for _, own := range []bool{true, false} {
		name := "its announcement"
		if own {
			name = "addresses of its own"
		}
		t.Run(name, func(t *testing.T) {
			g := newGossipTest(t)
			cleanup := func(gc *GossipConfig) { gc.DeadServerCleanup = 3 * time.Second }
			members, leader := threeByGossip(t, g, cleanup)
			g.start("n4", cleanup)
			testwait.For(t, 30*time.Second, "n4 to come in as a non-voter", func() bool {
				s, ok := suffrage(leader, "n4")
				return ok && s == raft.Nonvoter
			})
			victim := aFollower(members, leader)
			dead, gossipAt := victim.cfg.NodeID, victim.GossipAddr()
			testwait.For(t, 20*time.Second, "the victim to announce itself", func() bool {
				_, err := leader.fsm.Node(dead)
				return err == nil
			})
			victim.gossip.mu.Lock()
			m := victim.gossip.self
			victim.gossip.mu.Unlock()
			victim.Crash()
			testwait.For(t, 10*time.Second, "the leader to see the victim dead", func() bool {
				m, ok := gossipView(leader, dead)
				return ok && !m.alive
			})
			if own {
				m.Raft, m.API = blackHole(t), blackHole(t)
			}
			// The impostor binds the dead member's gossip address, so
			// memberlist takes it for the member back with a newer
			// incarnation.
			impostorAt(t, g.key, gossipAt, dead, m, leader.GossipAddr())
			testwait.For(t, 20*time.Second, "the dead voter removed and n4 promoted", func() bool {
				_, in := suffrage(leader, dead)
				s, _ := suffrage(leader, "n4")
				return !in && s == raft.Voter
			})
		})
	}
}

// Forged announcements of live members, each refuted by the member (its
// own announcement comes back), do not keep a cluster from forming with
// bootstrap_expect: an announcement that is not proven does not undo
// what the member proved.
func TestFlappingForgedAnnouncementsDoNotStopBootstrap(t *testing.T) {
	g := newGossipTest(t)
	members := []*Cluster{g.start("n1", nil), g.start("n2", nil), g.start("n3", nil)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bogus := freeport.For(t)
		for {
			for _, at := range members {
				for _, of := range members {
					if at == of {
						continue
					}
					of.gossip.mu.Lock()
					real := of.gossip.self
					of.gossip.mu.Unlock()
					forged := real
					forged.Raft, forged.API = bogus, bogus
					fb, _ := json.Marshal(forged)
					rb, _ := json.Marshal(real)
					// What memberlist hands for a forged alive message and
					// then the member's refutation.
					at.gossip.update(&memberlist.Node{Name: real.ID, Meta: fb, State: memberlist.StateAlive}, true)
					at.gossip.update(&memberlist.Node{Name: real.ID, Meta: rb, State: memberlist.StateAlive}, true)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	awaitThreeVoters(t, members, 20*time.Second)
}

// awaitThreeVoters waits until one of members leads three voters.
func awaitThreeVoters(t *testing.T, members []*Cluster, d time.Duration) {
	t.Helper()
	testwait.For(t, d, "three voters and a leader", func() bool {
		for _, m := range members {
			if m.IsLeader() && m.Status().Voters == 3 {
				return true
			}
		}
		return false
	})
}

// A holder of the gossip key who announces of every live member that it
// has Raft state (with its own addresses, which prove its certificate)
// delays the servers' bootstrap while each member refutes it, but does not
// stop it.
func TestForgedClusteredDoesNotStopBootstrap(t *testing.T) {
	g := newGossipTest(t)
	members := []*Cluster{g.start("n1", nil), g.start("n2", nil), g.start("n3", nil)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// announce hands each member, as memberlist would, every other
	// member's announcement, forged (clustered) or its own.
	announce := func(clustered bool) {
		for _, at := range members {
			for _, of := range members {
				of.gossip.mu.Lock()
				a := of.gossip.self
				of.gossip.mu.Unlock()
				if at == of || a.Clustered {
					continue
				}
				a.Clustered = a.Clustered || clustered
				b, _ := json.Marshal(a)
				at.gossip.update(&memberlist.Node{Name: a.ID, Meta: b, State: memberlist.StateAlive}, true)
			}
		}
	}
	wg.Go(func() {
		for {
			// A forged alive message stands until the member hears of it
			// and refutes it: long enough to be proven, and to keep the
			// set of servers from settling.
			announce(true)
			select {
			case <-stop:
				return
			case <-time.After(400 * time.Millisecond):
			}
			announce(false)
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	awaitThreeVoters(t, members, 30*time.Second)
}

// Many members that hold the gossip key, each with an API address that
// takes connections and never answers, do not hold up the proof of a
// real server that joins after them: once the leader has taken in the
// server's announcement, the next proof it starts is the server's (it has
// failed none), not another impostor's.
func TestBlackHoleImpostorsDoNotDelayARealServer(t *testing.T) {
	g := newGossipTest(t)
	members, leader := threeByGossip(t, g, nil)
	hole := blackHole(t)
	const n = 24 // three times the proofs in flight
	impostors := map[string]bool{}
	for i := range n {
		id := "imp-" + string(rune('a'+i/26)) + string(rune('a'+i%26))
		impostors[id] = true
		gossipImpostor(t, g.key, id, meta{ID: id, Raft: hole, API: hole, Clustered: true, LogFormat: fsm.LogFormat}, leader)
	}
	testwait.For(t, 30*time.Second, "every member to have asked each impostor once", func() bool {
		for _, c := range members {
			asked := 0
			for _, m := range c.gossip.snapshot() {
				if impostors[m.ID] && m.warned {
					asked++
				}
			}
			if asked < n {
				return false
			}
		}
		return true
	})
	// Every member proves: whichever leads when the later server comes
	// adds it.
	var mu sync.Mutex
	events := map[string][]string{} // by member: "seen zz-later", "start imp-aa", ...
	for _, c := range members {
		c.gossip.mu.Lock()
		c.gossip.trace = func(event, id string) {
			mu.Lock()
			events[c.cfg.NodeID] = append(events[c.cfg.NodeID], event+" "+id)
			mu.Unlock()
		}
		c.gossip.mu.Unlock()
	}
	// The later server joins gossip once its API serves.
	later := g.start("zz-later", func(gc *GossipConfig) { gc.BootstrapExpect, gc.RetryJoin = 0, nil })
	if _, err := later.gossip.ml.Join([]string{leader.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 30*time.Second, "the later server to be added", func() bool { return leader.isServer("zz-later") })
	mu.Lock()
	defer mu.Unlock()
	checked := 0
	for id, ev := range events {
		seen, started := slices.Index(ev, "seen zz-later"), slices.Index(ev, "start zz-later")
		if seen < 0 || started < seen {
			continue
		}
		checked++
		if between := ev[seen+1 : started]; slices.ContainsFunc(between, func(e string) bool { return strings.HasPrefix(e, "start imp-") }) {
			t.Errorf("%s started impostors' proofs before the later server's: %q", id, between)
		}
	}
	if checked == 0 {
		t.Fatalf("no member both saw and proved the later server: %q", events)
	}
}

// A holder of the gossip key who took a live server's gossip name (after
// a forged leave) with the server's own announcement, which the server
// then proved, does not keep the server from being removed once it dies.
func TestAHeldNameDoesNotKeepAServerThatDies(t *testing.T) {
	g := newGossipTest(t)
	cleanup := func(gc *GossipConfig) { gc.DeadServerCleanup = 3 * time.Second }
	members, leader := threeByGossip(t, g, cleanup)
	g.start("n4", cleanup)
	testwait.For(t, 30*time.Second, "n4 to come in as a non-voter", func() bool {
		s, ok := suffrage(leader, "n4")
		return ok && s == raft.Nonvoter
	})
	victim := aFollower(members, leader)
	id := victim.cfg.NodeID
	victim.gossip.mu.Lock()
	m := victim.gossip.self
	victim.gossip.mu.Unlock()
	// What a forged leave does, without forging one: the victim's
	// memberlist leaves; its Raft and its API run on.
	if err := victim.gossip.ml.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the leader to see the victim leave gossip", func() bool {
		m, ok := gossipView(leader, id)
		return ok && !m.alive
	})
	impostorAt(t, g.key, freeport.For(t), id, m, leader.GossipAddr())
	testwait.For(t, 10*time.Second, "the victim to count as alive again", func() bool {
		m, ok := gossipView(leader, id)
		return ok && m.alive && m.proven
	})
	victim.Crash()
	testwait.For(t, 25*time.Second, "the dead voter removed and n4 promoted", func() bool {
		_, in := suffrage(leader, id)
		s, _ := suffrage(leader, "n4")
		return !in && s == raft.Voter
	})
}

// A live voter whose gossip name a holder of the gossip key took after a
// forged leave, announcing what it cannot prove, stays left in gossip for
// as long as the impostor holds the name; Raft contact keeps it, and does
// so from the first moment of a new leader's term too, before the new
// leader has heard from anyone.
func TestAHeldNameDoesNotRemoveALiveVoterOnALeaderChange(t *testing.T) {
	g := newGossipTest(t)
	members, leader := threeByGossip(t, g, nil)
	victim := aFollower(members, leader)
	id := victim.cfg.NodeID
	var next *Cluster
	for _, m := range members {
		if m != leader && m != victim {
			next = m
		}
	}
	// What a forged leave does, without forging one: the victim's
	// memberlist leaves; its Raft and its API run on.
	if err := victim.gossip.ml.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	hole := blackHole(t)
	impostorAt(t, g.key, freeport.For(t), id, meta{ID: id, Raft: hole, API: hole, Clustered: true, LogFormat: fsm.LogFormat}, leader.GossipAddr())
	testwait.For(t, 10*time.Second, "the next leader to take the impostor's announcement for the victim's", func() bool {
		m, ok := gossipView(next, id)
		return ok && (m.API == hole || m.next != nil && m.next.API == hole)
	})
	// Dead in gossip for longer than dead_server_cleanup (a second): only
	// Raft contact keeps it.
	time.Sleep(1500 * time.Millisecond)
	if err := leader.raft.LeadershipTransferToServer(raft.ServerID(next.cfg.NodeID), raft.ServerAddress(next.transport.LocalAddr())).Error(); err != nil {
		t.Fatal(err)
	}
	for !next.IsLeader() {
		time.Sleep(time.Millisecond)
	}
	// Whether the new leader heard from the victim yet is a race; say it
	// did not, at the new leader's first look.
	next.contact.last.Delete(raft.ServerID(id))
	if st := next.pilot.KnownServers()[raft.ServerID(id)].NodeStatus; st != autopilot.NodeUnknown {
		t.Errorf("a new leader that has not heard from a live voter yet counts it %s", st)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if s, ok := suffrage(next, id); !ok || s != raft.Voter {
			t.Fatalf("a live voter was removed when leadership moved (in configuration: %v, %v)", ok, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A node's prover shows its node certificate, and sends its question,
// only to a server that showed a node certificate of this cluster first:
// a key holder who announces any address as its API learns nothing from
// the node's connections to it.
func TestTheProverShowsNoCertificateToAStranger(t *testing.T) {
	g := newGossipTest(t)
	_, leader := threeByGossip(t, g, nil)
	var hellos, certs, requests atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) }))
	srv.TLS = &tls.Config{
		ClientAuth: tls.RequestClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			hellos.Add(1)
			return nil, nil
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				certs.Add(1)
			}
			return nil
		},
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	gossipImpostor(t, g.key, "stranger", meta{ID: "stranger", Raft: srv.Listener.Addr().String(), API: srv.Listener.Addr().String(), LogFormat: fsm.LogFormat}, leader)
	testwait.For(t, 10*time.Second, "every node to ask the stranger twice", func() bool { return hellos.Load() >= 6 })
	if n, r := certs.Load(), requests.Load(); n > 0 || r > 0 {
		t.Errorf("a server with no node certificate of this cluster got %d node certificates and %d requests", n, r)
	}
}

// A member never proven is forgotten once it goes: members under ever new
// names do not pile up in a node's view.
func TestAGoneImpostorIsForgotten(t *testing.T) {
	g := newGossipTest(t)
	_, leader := threeByGossip(t, g, nil)
	ml := impostorAt(t, g.key, freeport.For(t), "transient", meta{ID: "transient", Raft: blackHole(t), API: blackHole(t), LogFormat: fsm.LogFormat}, leader.GossipAddr())
	testwait.For(t, 10*time.Second, "the leader to see the impostor", func() bool {
		_, ok := gossipView(leader, "transient")
		return ok
	})
	ml.Shutdown()
	testwait.For(t, 20*time.Second, "the leader to forget the impostor", func() bool {
		_, ok := gossipView(leader, "transient")
		return !ok
	})
}

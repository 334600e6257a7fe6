package node

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/quorumca/quorumca/client"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/internal/freeport"
	"github.com/quorumca/quorumca/internal/testwait"
)

func gossipKey(t *testing.T) string {
	k := make([]byte, 32)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// gossipCluster starts n nodes at once, every one configured the same way:
// gossip with retry_join of them all and bootstrap_expect 3. Nobody sets
// bootstrap by hand.
func gossipCluster(t *testing.T, n int, key string) (*testCluster, []string) {
	t.Helper()
	c := emptyCluster(t, cluster.FastTiming())
	var gossipAddrs []string
	for range n {
		gossipAddrs = append(gossipAddrs, freeport.For(t))
	}
	for i := range n {
		c.nodes = append(c.nodes, &testNode{cfg: c.gossipConfig(i, gossipAddrs[i], gossipAddrs, key)})
	}
	c.startAll()
	return c, gossipAddrs
}

// startAll starts every node at once, as machines booting together do.
func (c *testCluster) startAll() {
	var wg sync.WaitGroup
	for _, tn := range c.nodes {
		wg.Go(func() { c.startQuiet(tn) })
	}
	wg.Wait()
}

func (c *testCluster) gossipConfig(i int, listen string, join []string, key string) Config {
	name := fmt.Sprintf("n%d", i+1)
	certFile, keyFile, err := c.pki.NodeTLS(filepath.Join(c.dir, "tls-"+name), []string{"127.0.0.1"})
	if err != nil {
		c.t.Fatal(err)
	}
	http := freeport.For(c.t)
	return Config{
		NodeName: name, DataDir: filepath.Join(c.dir, name), HTTPListen: http,
		APIListen: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: keyFile,
		RaftListen: "127.0.0.1:0", JoinSecret: c.secret, ClusterCAKey: c.clusterCAKey(),
		GossipListen: listen, GossipKey: key, RetryJoin: join, BootstrapExpect: 3, Voters: 3,
		DeadServerCleanup: 2 * time.Second, ServerStabilization: time.Second, GossipFast: true,
		Authorities:             []*AuthorityConfig{c.pki.Authority("http://" + http)},
		BootstrapAdminTokenFile: filepath.Join(c.dir, "admin.token"), AllowInsecureSoftSigner: true,
		Timing: c.timing, HoldTimeout: 5 * time.Second, Now: c.clock.Now, Logger: testLogger().With("test_node", name),
	}
}

// startQuiet is start for goroutines other than the test's.
func (c *testCluster) startQuiet(tn *testNode) {
	n, err := Start(tn.cfg)
	if err != nil {
		c.t.Errorf("start %s: %v", tn.cfg.NodeName, err)
		return
	}
	tn.node = n
	tn.cfg.APIListen, tn.cfg.RaftListen = n.APIAddr(), n.Cluster().RaftAddr()
}

// suffrages counts voters and non-voters as node tn sees the configuration.
func suffrages(tn *testNode) (voters, nonvoters int, ids map[string]bool) {
	servers, err := tn.node.Cluster().Servers()
	if err != nil {
		return 0, 0, nil
	}
	ids = map[string]bool{}
	for _, s := range servers {
		ids[string(s.ID)] = true
		if s.Suffrage == raft.Voter {
			voters++
		} else {
			nonvoters++
		}
	}
	return voters, nonvoters, ids
}

func TestGossipFormsOneClusterAndHeals(t *testing.T) {
	key := gossipKey(t)
	c, addrs := gossipCluster(t, 5, key)
	testwait.For(t, 30*time.Second, "one cluster of 3 voters and 2 non-voters, one leader", func() bool {
		leaders := map[string]bool{}
		for _, tn := range c.nodes {
			v, nv, _ := suffrages(tn)
			if v != 3 || nv != 2 {
				return false
			}
			leaders[tn.node.Cluster().Status().LeaderID] = true
		}
		return len(leaders) == 1 && !leaders[""]
	})
	c.WaitConverged()
	c.admin = readAdminToken(t, c.dir)

	// The leader's /v1/health shows how autopilot judges every server.
	testwait.For(t, 20*time.Second, "the leader's health to show five healthy servers", func() bool {
		var h client.Health
		c.do(c.Leader(), "GET", "/v1/health", nil, "").decode(t, &h)
		if h.Autopilot == nil || len(h.Autopilot.Servers) != 5 {
			return false
		}
		for _, s := range h.Autopilot.Servers {
			if !s.Healthy || s.Status != "alive" {
				return false
			}
		}
		return h.Autopilot.Healthy
	})

	// A non-voter serves and forwards like any node.
	var nonvoter *testNode
	for _, tn := range c.nodes {
		if servers, _ := tn.node.Cluster().Servers(); servers != nil {
			for _, s := range servers {
				if s.Suffrage == raft.Nonvoter && string(s.ID) == tn.cfg.NodeName {
					nonvoter = tn
				}
			}
		}
	}
	c.enrollHolder(nonvoter, "via-nonvoter.example")

	// A node with the wrong gossip key stays out; one with the right key,
	// started after it, gets in.
	wrong := &testNode{cfg: c.gossipConfig(5, freeport.For(t), addrs, gossipKey(t))}
	right := &testNode{cfg: c.gossipConfig(6, freeport.For(t), addrs, key)}
	c.nodes = append(c.nodes, wrong, right)
	c.start(wrong)
	c.start(right)
	leader := c.Leader()
	testwait.For(t, 20*time.Second, "the node with the right key to join", func() bool {
		_, _, ids := suffrages(leader)
		return ids["n7"]
	})
	if _, _, ids := suffrages(leader); ids["n6"] {
		t.Error("a node with the wrong gossip key was added")
	}
	if n := wrong.node.Cluster().GossipMembers(); n != 1 {
		t.Errorf("the wrong-key node sees %d gossip members", n)
	}

	// Kill a voter (no leave): after dead_server_cleanup it is removed and a
	// non-voter is promoted.
	var victim *testNode
	servers, _ := leader.node.Cluster().Servers()
	for _, tn := range c.nodes[:5] {
		for _, s := range servers {
			if victim == nil && tn != leader && string(s.ID) == tn.cfg.NodeName && s.Suffrage == raft.Voter {
				victim = tn
			}
		}
	}
	victim.node.crash()
	victim.node = nil
	testwait.For(t, 30*time.Second, "the dead voter removed and a non-voter promoted", func() bool {
		l := c.Leader()
		v, _, ids := suffrages(l)
		return v == 3 && !ids[victim.cfg.NodeName]
	})
	c.enrollHolder(c.Leader(), "after-cleanup.example")
}

func readAdminToken(t *testing.T, dir string) string {
	t.Helper()
	var tok string
	testwait.For(t, 10*time.Second, "the admin token file", func() bool {
		b, err := readFileTrim(filepath.Join(dir, "admin.token"))
		tok = b
		return err == nil
	})
	return tok
}

// A server replaced the way an auto-scaling group replaces one (the old
// process stops or dies; a new one starts with the same data volume, so the
// same node_name and state, at a new address) keeps its place: it is never
// removed from the configuration nor demoted, and comes back as a voter at
// its new Raft address with no operator step. The waits a lifecycle hook
// runs say when a server may be stopped and when its replacement is in
// service: stopping another voter while one is away is not safe.
func TestAReplacedServerKeepsItsPlaceAtANewAddress(t *testing.T) {
	key := gossipKey(t)
	c := emptyCluster(t, cluster.FastTiming())
	var addrs []string
	for range 3 {
		addrs = append(addrs, freeport.For(t))
	}
	for i := range 3 {
		cfg := c.gossipConfig(i, addrs[i], addrs, key)
		// Longer than a replacement takes, as in production (30m there):
		// a crashed member's gossip name is free for its successor only
		// once memberlist has forgotten it.
		cfg.DeadServerCleanup = 2 * time.Minute
		c.nodes = append(c.nodes, &testNode{cfg: cfg})
	}
	c.startAll()
	testwait.For(t, 30*time.Second, "three voters and one leader", func() bool {
		for _, tn := range c.nodes {
			if v, nv, _ := suffrages(tn); v != 3 || nv != 0 {
				return false
			}
		}
		return c.Leader() != nil
	})
	c.WaitConverged()
	c.admin = readAdminToken(t, c.dir)

	// Every node's view of the configuration, polled while servers are
	// replaced: a replaced server must never leave it nor lose its vote.
	var mu sync.Mutex
	var lapses []string
	watched := map[string]bool{}
	observe := map[string]*Node{} // the running nodes, set by the test goroutine
	for _, tn := range c.nodes {
		observe[tn.cfg.NodeName] = tn.node
	}
	setObserved := func(tn *testNode) {
		mu.Lock()
		defer mu.Unlock()
		if tn.node == nil {
			delete(observe, tn.cfg.NodeName)
		} else {
			observe[tn.cfg.NodeName] = tn.node
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			for name, n := range observe {
				servers, err := n.Cluster().Servers()
				if err != nil {
					continue
				}
				in := map[string]raft.ServerSuffrage{}
				for _, s := range servers {
					in[string(s.ID)] = s.Suffrage
				}
				for id := range watched {
					if s, ok := in[id]; !ok || s != raft.Voter {
						lapses = append(lapses, fmt.Sprintf("%s saw %s as %v (in: %v)", name, id, s, ok))
					}
				}
			}
			mu.Unlock()
		}
	})
	defer func() { close(stop); wg.Wait() }()

	for _, how := range []string{"stopped", "crashed"} {
		leader := c.Leader()
		var victim, other *testNode
		for _, tn := range c.nodes {
			switch {
			case tn == leader:
			case victim == nil:
				victim = tn
			default:
				other = tn
			}
		}
		id := victim.cfg.NodeName
		api := c.apiClient
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := api(victim).WaitQuorumWithout(ctx, id, 100*time.Millisecond, nil); err != nil {
			t.Fatalf("%s: stopping %s with every server healthy: %v", how, id, err)
		}
		oldRaft := victim.cfg.RaftListen
		mu.Lock()
		watched[id] = true
		mu.Unlock()
		stopping := victim.node
		victim.node = nil
		setObserved(victim)
		if how == "stopped" {
			stopping.Close() // as on SIGTERM: leaves gossip
		} else {
			stopping.crash()
		}

		// While it is away, the others hold a quorum without it, and
		// stopping one more voter is not safe.
		rest := api(leader, other)
		if err := rest.WaitQuorumWithout(ctx, id, 100*time.Millisecond, nil); err != nil {
			t.Fatalf("%s: the cluster without %s: %v", how, id, err)
		}
		testwait.For(t, 30*time.Second, "the leader to see that stopping another voter would lose the quorum", func() bool {
			h, err := rest.LeaderHealth(ctx)
			return err == nil && h.QuorumWithout(other.cfg.NodeName) != nil
		})

		// Away for a while, as an instance replacement takes minutes: the
		// leader sees it gone (left, or dead for less than
		// dead_server_cleanup), and runs many autopilot rounds (every
		// 250 ms) meanwhile, any of which could remove it.
		testwait.For(t, 30*time.Second, "the leader to see "+id+" gone", func() bool {
			h, err := rest.LeaderHealth(ctx)
			if err != nil || h.Autopilot == nil {
				return false
			}
			for _, s := range h.Autopilot.Servers {
				if s.ID == id {
					return s.Status != "alive" && !s.Healthy
				}
			}
			t.Fatalf("%s: the leader removed %s as soon as it was gone", how, id)
			return false
		})
		time.Sleep(3 * time.Second) // the replacement's boot, not a synchronisation

		// The replacement: same data and name, new addresses.
		victim.cfg.APIListen, victim.cfg.RaftListen, victim.cfg.GossipListen = "127.0.0.1:0", "127.0.0.1:0", freeport.For(t)
		c.start(victim)
		setObserved(victim)
		if victim.cfg.RaftListen == oldRaft {
			t.Fatalf("%s: the replacement got the old Raft address %s", how, oldRaft)
		}
		if err := api(victim).WaitReady(ctx, 2*time.Second, 100*time.Millisecond, nil, nil); err != nil {
			t.Fatalf("%s: the replacement never stayed ready: %v", how, err)
		}
		testwait.For(t, 60*time.Second, id+" a voter at its new Raft address on every node", func() bool {
			for _, tn := range c.running() {
				servers, err := tn.node.Cluster().Servers()
				if err != nil {
					return false
				}
				ok := false
				for _, s := range servers {
					ok = ok || (string(s.ID) == id && string(s.Address) == victim.cfg.RaftListen && s.Suffrage == raft.Voter)
				}
				if !ok {
					return false
				}
			}
			return true
		})
		if err := rest.WaitQuorumWithout(ctx, other.cfg.NodeName, 100*time.Millisecond, nil); err != nil {
			t.Fatalf("%s: with %s back, stopping %s: %v", how, id, other.cfg.NodeName, err)
		}
		cancel()
		c.enrollHolder(victim, how+"-replacement.example")
		mu.Lock()
		if len(lapses) > 0 {
			t.Fatalf("%s: a replaced server lost its place: %s", how, strings.Join(lapses[:min(len(lapses), 5)], "; "))
		}
		mu.Unlock()
	}
}

// gossipClusterOf starts n gossip servers keeping voters voters, gone
// servers removed after cleanup.
func gossipClusterOf(t *testing.T, n, voters int, cleanup time.Duration) *testCluster {
	t.Helper()
	key := gossipKey(t)
	c := emptyCluster(t, cluster.FastTiming())
	var addrs []string
	for range n {
		addrs = append(addrs, freeport.For(t))
	}
	for i := range n {
		cfg := c.gossipConfig(i, addrs[i], addrs, key)
		cfg.Voters, cfg.DeadServerCleanup = voters, cleanup
		c.nodes = append(c.nodes, &testNode{cfg: cfg})
	}
	c.startAll()
	testwait.For(t, 60*time.Second, fmt.Sprintf("%d voters of %d servers and a leader", voters, n), func() bool {
		for _, tn := range c.nodes {
			if v, nv, _ := suffrages(tn); v != voters || nv != n-voters {
				return false
			}
		}
		return c.Leader() != nil
	})
	c.WaitConverged()
	c.admin = readAdminToken(t, c.dir)
	return c
}

// A server that goes while no running process watches it in gossip (scaled
// in, then every other server restarted by the roll that follows) is still
// removed once Raft has not heard from it for dead_server_cleanup: it does
// not stay a voter forever, holding the quorum at ransom.
func TestAServerGoneBeforeEveryRestartIsStillRemoved(t *testing.T) {
	cleanup := 5 * time.Second
	c := gossipClusterOf(t, 5, 5, cleanup)
	gone := c.Followers()[0]
	id := gone.cfg.NodeName
	c.Stop(gone)
	for _, tn := range c.nodes {
		if tn == gone {
			continue
		}
		c.Stop(tn)
		c.start(tn)
		testwait.For(t, 30*time.Second, tn.cfg.NodeName+" back, with a leader", func() bool {
			st := tn.node.Cluster().Status()
			return st.LeaderID != "" && st.LastContact < 1
		})
	}
	testwait.For(t, 60*time.Second, id+" removed", func() bool {
		l := c.Leader()
		if l == nil {
			return false
		}
		_, _, ids := suffrages(l)
		return ids != nil && !ids[id]
	})
	c.enrollHolder(c.Leader(), "after-removal.example")
}

// A replacement that comes up at the Raft address another server left
// moments ago (a subnet reuses private addresses) waits: the other server
// is away, not failed, and keeps its place until Raft has not heard from
// it for dead_server_cleanup; only then is it removed, and the replacement
// moved to the address.
func TestAReplacementAtAnAwayServersAddressDoesNotRemoveIt(t *testing.T) {
	cleanup := 15 * time.Second
	c := gossipClusterOf(t, 5, 5, cleanup)
	f := c.Followers()
	x, y := f[0], f[1]
	xRaft := x.cfg.RaftListen
	c.Stop(x)
	stopped := time.Now()
	c.Stop(y)
	// y's replacement gets x's old address.
	y.cfg.APIListen, y.cfg.RaftListen, y.cfg.GossipListen = "127.0.0.1:0", xRaft, freeport.For(t)
	c.start(y)
	testwait.For(t, 90*time.Second, y.cfg.NodeName+" moved to "+x.cfg.NodeName+"'s old address", func() bool {
		l := c.Leader()
		if l == nil {
			return false
		}
		xIn, _ := inConfig(l, x.cfg.NodeName)
		if !xIn && time.Since(stopped) < cleanup {
			t.Fatalf("%s, away for %v, was removed when %s came up at its address (dead_server_cleanup %v)",
				x.cfg.NodeName, time.Since(stopped).Round(time.Millisecond), y.cfg.NodeName, cleanup)
		}
		servers, _ := l.node.Cluster().Servers()
		for _, s := range servers {
			if string(s.ID) == y.cfg.NodeName && string(s.Address) == xRaft {
				return !xIn
			}
		}
		return false
	})
}

// apiClient is a client of the given nodes, in order, trusting the dev root.
func (c *testCluster) apiClient(tns ...*testNode) *client.Client {
	c.t.Helper()
	var urls []string
	for _, tn := range tns {
		urls = append(urls, "https://"+tn.node.APIAddr())
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.pki.Root())
	cl, err := client.New(client.Config{Addr: urls[0], Addrs: urls[1:], RootCAs: pool, RetryFor: 5 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// inConfig says whether id is in tn's Raft configuration, and as what.
func inConfig(tn *testNode, id string) (bool, raft.ServerSuffrage) {
	servers, err := tn.node.Cluster().Servers()
	if err != nil {
		return false, 0
	}
	for _, s := range servers {
		if string(s.ID) == id {
			return true, s.Suffrage
		}
	}
	return false, 0
}

// The gossip key rotates without a stop, as Consul's keyring does: every
// node's key_file gets the new key as a second line (each accepts both),
// then first (each sends with it), then alone; each step is a SIGHUP
// (Reload), and the cluster serves throughout. A gossip peer that holds
// only one key joins exactly when every node answers with that key.
func TestGossipKeyRotatesWithoutAStop(t *testing.T) {
	oldKey, newKey := gossipKey(t), gossipKey(t)
	c := emptyCluster(t, cluster.FastTiming())
	var addrs []string
	for range 3 {
		addrs = append(addrs, freeport.For(t))
	}
	keyFile := func(tn *testNode) string { return filepath.Join(c.dir, tn.cfg.NodeName+".gossip.key") }
	for i := range 3 {
		tn := &testNode{cfg: c.gossipConfig(i, addrs[i], addrs, "")}
		tn.cfg.GossipKeyFile = keyFile(tn)
		if err := os.WriteFile(tn.cfg.GossipKeyFile, []byte(oldKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, tn)
	}
	c.startAll()
	testwait.For(t, 30*time.Second, "three voters and a leader", func() bool {
		for _, tn := range c.nodes {
			if v, _, _ := suffrages(tn); v != 3 {
				return false
			}
		}
		return c.Leader() != nil
	})
	c.admin = readAdminToken(t, c.dir)

	// joins says whether a peer holding only key can join each node: the
	// push-pull of a join needs both ends to read each other.
	joins := func(key string) []bool {
		k, err := base64.StdEncoding.DecodeString(key)
		if err != nil {
			t.Fatal(err)
		}
		var out []bool
		for _, tn := range c.nodes {
			mc := memberlist.DefaultLocalConfig()
			mc.Name, mc.BindAddr, mc.BindPort = "probe-"+tn.cfg.NodeName, "127.0.0.1", 0
			mc.SecretKey, mc.LogOutput, mc.TCPTimeout = k, io.Discard, time.Second
			ml, err := memberlist.Create(mc)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ml.Join([]string{tn.node.Cluster().GossipAddr()})
			out = append(out, err == nil)
			ml.Shutdown()
		}
		return out
	}
	all := func(v bool) []bool { return []bool{v, v, v} }
	step := func(name, content string, oldJoins, newJoins bool) {
		t.Helper()
		for _, tn := range c.nodes {
			if err := os.WriteFile(keyFile(tn), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			tn.node.Reload(nil)
		}
		if got := joins(oldKey); !slices.Equal(got, all(oldJoins)) {
			t.Errorf("%s: a peer with the old key joins %v, want %v", name, got, oldJoins)
		}
		if got := joins(newKey); !slices.Equal(got, all(newJoins)) {
			t.Errorf("%s: a peer with the new key joins %v, want %v", name, got, newJoins)
		}
		for _, tn := range c.nodes {
			c.enrollHolder(tn, tn.cfg.NodeName+"-"+strings.ReplaceAll(name, " ", "-")+".example")
		}
	}
	step("before", oldKey+"\n", true, false)
	step("new key added", oldKey+"\n"+newKey+"\n", true, false)
	step("new key primary", "# rotated\n"+newKey+"\n"+oldKey+"\n", false, true)
	step("old key removed", newKey+"\n", false, true)
	for _, tn := range c.nodes {
		if n := tn.node.Cluster().GossipMembers(); n < 3 {
			t.Errorf("%s sees %d live gossip members after the rotation", tn.cfg.NodeName, n)
		}
	}

	// A key file that holds no key leaves the keyring as it was.
	for _, tn := range c.nodes {
		if err := os.WriteFile(keyFile(tn), []byte("# nothing\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tn.node.Reload(nil)
	}
	if got := joins(newKey); !slices.Equal(got, all(true)) {
		t.Errorf("after an empty key file, a peer with the current key joins %v", got)
	}
}

// A replacement at the address of a server that is only away answers what
// Raft sends that server; those answers are not that server's. Alone of
// three voters (the other two stopped), it must never win an election by
// voting for itself through the other's slot; once a second voter is back,
// the cluster elects a leader.
func TestAReplacementAtAnAwayServersAddressDoesNotVoteTwice(t *testing.T) {
	c := gossipClusterOf(t, 3, 3, 10*time.Minute)
	f := c.Followers()
	x, y := f[0], f[1]
	l := c.Leader()
	xRaft := x.cfg.RaftListen
	c.Stop(x)
	c.Stop(y)
	y.cfg.APIListen, y.cfg.RaftListen, y.cfg.GossipListen = "127.0.0.1:0", xRaft, freeport.For(t)
	c.start(y)
	testwait.For(t, 60*time.Second, "a leader with y back", func() bool { return c.Leader() != nil })
	c.Stop(l)
	// A leader from before keeps its lease a moment; then an observation
	// window of many election timeouts (fast timing: tens of milliseconds),
	// not a synchronisation: y must not win one.
	testwait.For(t, 10*time.Second, y.cfg.NodeName+" not leading alone", func() bool { return !y.node.Cluster().IsLeader() })
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if y.node.Cluster().IsLeader() {
			t.Fatalf("%s, alone of three voters, became leader: its answers as %s counted as %s's vote", y.cfg.NodeName, x.cfg.NodeName, x.cfg.NodeName)
		}
	}
	c.start(l)
	// y wins: its own answers count once, and L's make two of three.
	testwait.For(t, 60*time.Second, "a write to commit with two of three voters up", func() bool {
		r, err := c.try(y, "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"two-of-three.example"}, "ttl": "1h"}, c.admin)
		return err == nil && r.status == http.StatusCreated
	})
}

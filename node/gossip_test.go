package node

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

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

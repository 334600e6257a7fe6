package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/backoff"
	"github.com/quorumca/quorumca/internal/logbridge"
)

// Gossip: nodes find each other with memberlist (encrypted with a shared
// key), a cluster forms once bootstrap_expect servers are present, and the
// leader keeps Raft membership in line with who is alive with autopilot
// (autopilot.go), the way Consul and Nomad servers do.

// GossipConfig turns gossip membership on.
type GossipConfig struct {
	Bind      string // host:port for gossip (TCP and UDP)
	Advertise string // host:port others reach; defaults to the bound address
	Key       []byte // 16, 24 or 32 bytes: AES key that encrypts and authenticates gossip
	// OtherKeys are accepted as well while a key is rotated (a keyring:
	// Key encrypts, every key decrypts); SetGossipKeys changes them live.
	OtherKeys [][]byte
	// RetryJoin lists where to find the cluster: host:port entries, or
	// "provider=NAME key=value ..." entries resolved by a JoinProvider.
	RetryJoin []string
	// BootstrapExpect: without Raft state, wait for this many servers and
	// form one cluster with them (no node sets bootstrap by hand).
	BootstrapExpect int
	// Voters is the number of voters to keep (3 or 5); further servers are
	// non-voters, promoted when a voter goes away.
	Voters int
	// DeadServerCleanup: a server dead for this long is removed from Raft.
	DeadServerCleanup time.Duration
	// Stabilization: a new server joins as a non-voter and is promoted
	// once it has been healthy this long (default 10s).
	Stabilization time.Duration
	// Fast shortens gossip timings for tests on one machine.
	Fast bool
}

// JoinProvider turns a "provider=NAME ..." retry_join entry into addresses
// (for cloud auto-join, such as EC2 instances with a tag).
type JoinProvider interface {
	Addrs(ctx context.Context, args map[string]string) ([]string, error)
}

var (
	providersMu   sync.Mutex
	joinProviders = map[string]JoinProvider{}
)

// RegisterJoinProvider makes a provider available to retry_join.
func RegisterJoinProvider(name string, p JoinProvider) {
	providersMu.Lock()
	defer providersMu.Unlock()
	joinProviders[name] = p
}

// resolveJoin expands retry_join entries into gossip addresses.
func resolveJoin(ctx context.Context, entries []string) ([]string, error) {
	var out []string
	for _, e := range entries {
		args := map[string]string{}
		for _, kv := range strings.Fields(e) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				args[k] = v
			}
		}
		name, ok := args["provider"]
		if !ok {
			out = append(out, e)
			continue
		}
		providersMu.Lock()
		p := joinProviders[name]
		providersMu.Unlock()
		if p == nil {
			return nil, fmt.Errorf("retry_join: unknown provider %q", name)
		}
		addrs, err := p.Addrs(ctx, args)
		if err != nil {
			return nil, fmt.Errorf("retry_join provider %s: %w", name, err)
		}
		out = append(out, addrs...)
	}
	return out, nil
}

// meta is what a node tells others about itself over gossip.
type meta struct {
	ID        string `json:"id"`
	Raft      string `json:"raft"`
	API       string `json:"api"`
	Clustered bool   `json:"clustered"` // it has Raft state: join it, do not bootstrap
	// LogFormat is the newest log format the node's binary reads; a
	// release before it says nothing (0). The leader does not add a node
	// that cannot read the log (addServer).
	LogFormat int `json:"log_format"`
}

// member is a server as gossip sees it.
type member struct {
	meta
	// alive is false once gossip says it died or left: the two are one
	// here (memberlist v0.7.0 hands NotifyLeave a Node whose State it never
	// updates, and either way a server is kept until Raft has not heard
	// from it for dead_server_cleanup, so that a replacement under its name
	// takes its place).
	alive bool
	since time.Time // when it stopped being alive
	// proven: its API showed a node certificate for its id (prove.go);
	// tried is when it was last asked, busy while it is, fails how many
	// proofs it failed since its last, warned whether a failure was said.
	proven, warned, busy bool
	tried, provenAt      time.Time
	fails                int
	// next: a later announcement of a proven member, or its announcement
	// back from the dead, not proven yet. The member stays what it proved
	// (alive, or dead since it died) until next is proven: a holder of the
	// gossip key can announce for any name (a forged alive message, or a
	// name memberlist let go), and such an announcement must neither keep
	// a dead server from being removed nor, refuted at once, unsettle
	// what the member proved.
	next *meta
}

// toProve is the announcement of m to prove, if any.
func (m *member) toProve() (meta, bool) {
	switch {
	case m.next != nil:
		return *m.next, true
	case m.alive && !m.proven:
		return m.meta, true
	}
	return meta{}, false
}

type gossip struct {
	c       *Cluster
	cfg     GossipConfig
	ml      *memberlist.Memberlist
	mu      sync.Mutex
	members map[string]*member
	self    meta
	changed chan struct{} // a member came, went, changed or proved its id
	prove   chan struct{} // a member to prove, or a proof slot free
	proving int           // proofs in flight
	addr    string        // where this node gossips, as it started
	keyring *memberlist.Keyring
	// trace, for tests, sees under mu each announcement taken in
	// ("seen") and each proof started ("start").
	trace func(event, id string)
}

func (g *gossip) NodeMeta(limit int) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	b, _ := json.Marshal(g.self)
	return b
}
func (g *gossip) NotifyMsg([]byte)                           {}
func (g *gossip) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (g *gossip) LocalState(join bool) []byte                { return nil }
func (g *gossip) MergeRemoteState(buf []byte, join bool)     {}

func (g *gossip) NotifyJoin(n *memberlist.Node)   { g.update(n, true) }
func (g *gossip) NotifyUpdate(n *memberlist.Node) { g.update(n, true) }
func (g *gossip) NotifyLeave(n *memberlist.Node)  { g.update(n, false) }

func (g *gossip) update(n *memberlist.Node, alive bool) {
	var m meta
	if json.Unmarshal(n.Meta, &m) != nil || m.ID == "" {
		return // not one of ours
	}
	if m.ID != n.Name {
		// Memberlist keeps names unique among live members; an id that is
		// not the member's name could be a live server's, and the leader
		// would move that server to the address announced with it.
		g.c.log.Warn("ignoring a gossip member that announces another id", "member", n.Name, "id", m.ID)
		return
	}
	self := m.ID == g.c.cfg.NodeID
	// A member never proven that is gone is forgotten, unless Raft has a
	// server of its id (dead_server_cleanup): members under ever new names
	// would otherwise pile up here.
	forget := !alive && !self && !g.c.isServer(m.ID)
	g.mu.Lock()
	old, ok := g.members[m.ID]
	switch {
	case ok && old.proven && !self && (old.meta != m || alive && !old.alive):
		// Another announcement, or one that comes back from the dead: a
		// proof is of a live member, and anyone may take a dead member's
		// name with the announcement it proved.
		if alive {
			old.next = &m
			break
		}
		// Gone under another announcement: gossip says so of the name,
		// as of any member (any key holder can; Raft contact guards
		// against it, KnownServers).
		old.next = nil
		if old.alive {
			old.since = time.Now()
		}
		old.alive = false
	case forget && (!ok || !old.proven):
		delete(g.members, m.ID)
	default:
		cur := &member{meta: m, alive: alive, proven: self}
		if !alive {
			cur.since = time.Now()
			if ok && !old.alive {
				cur.since = old.since
			}
		}
		if ok {
			cur.warned, cur.tried, cur.busy, cur.fails = old.warned, old.tried, old.busy, old.fails
			if old.meta == m {
				// The same announcement: what was proven of it still holds.
				cur.proven, cur.provenAt = cur.proven || old.proven, old.provenAt
			}
		}
		g.members[m.ID] = cur
	}
	if g.trace != nil && alive {
		g.trace("seen", m.ID)
	}
	g.mu.Unlock()
	for _, ch := range []chan struct{}{g.changed, g.prove} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (g *gossip) snapshot() []member {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]member, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// setClustered tells the others this node now has Raft state.
func (g *gossip) setClustered() {
	g.mu.Lock()
	changed := !g.self.Clustered
	g.self.Clustered = true
	g.mu.Unlock()
	if changed {
		g.ml.UpdateNode(time.Second)
	}
}

// startGossip joins the gossip pool and starts the loops that form and keep
// the cluster.
func (c *Cluster) startGossip(existing bool) error {
	gc := *c.cfg.Gossip
	if gc.Voters == 0 {
		gc.Voters = 3
	}
	if gc.DeadServerCleanup == 0 {
		gc.DeadServerCleanup = 2 * time.Minute
	}
	if gc.Stabilization == 0 {
		gc.Stabilization = defaultStabilization
	}
	g := &gossip{c: c, cfg: gc, members: map[string]*member{}, changed: make(chan struct{}, 1), prove: make(chan struct{}, 1),
		self: meta{ID: c.cfg.NodeID, Raft: string(c.transport.LocalAddr()), API: c.cfg.APIAdvertise, Clustered: existing, LogFormat: fsm.LogFormat}}
	mc := memberlist.DefaultLANConfig()
	if gc.Fast {
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval, mc.ProbeTimeout, mc.GossipInterval = 200*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
		mc.SuspicionMult, mc.PushPullInterval = 2, 2*time.Second
	}
	mc.Name = c.cfg.NodeID
	host, port, err := splitHostPort(gc.Bind)
	if err != nil {
		return fmt.Errorf("gossip bind: %w", err)
	}
	mc.BindAddr, mc.BindPort = host, port
	if gc.Advertise != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitHostPort(gc.Advertise); err != nil {
			return fmt.Errorf("gossip advertise: %w", err)
		}
	}
	if g.keyring, err = memberlist.NewKeyring(gc.OtherKeys, gc.Key); err != nil {
		return fmt.Errorf("gossip keyring: %w", err)
	}
	mc.Keyring = g.keyring
	mc.Delegate, mc.Events = g, g
	mc.Logger = logbridge.Logger(c.log.With("subsystem", "memberlist"), slog.LevelDebug)
	if g.ml, err = memberlist.Create(mc); err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	// Read once, now: memberlist rewrites its local node's fields as it
	// refutes and updates, without a lock a reader could take.
	n := g.ml.LocalNode()
	g.addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	c.gossip = g
	c.pilot = newPilot(c, g)
	c.OnLeader(c.pilot.run)
	c.wg.Add(3)
	go c.gossipJoinLoop()
	go c.membershipLoop()
	go c.proveLoop()
	return nil
}

// SetGossipKeys makes keys this node's gossip keyring, live: primary
// encrypts what it sends, and every key decrypts what it receives. A key is
// rotated without a stop, as Consul's keyring does, in three rounds over
// every node: add the new key (each node accepts both), make it primary
// (each sends with it and still reads the old), remove the old one.
func (c *Cluster) SetGossipKeys(primary []byte, others [][]byte) error {
	if c.gossip == nil {
		return errors.New("gossip is off")
	}
	kr := c.gossip.keyring
	for _, k := range append([][]byte{primary}, others...) {
		if err := kr.AddKey(k); err != nil {
			return err
		}
	}
	if err := kr.UseKey(primary); err != nil {
		return err
	}
	keep := append([][]byte{primary}, others...)
	for _, k := range kr.GetKeys() {
		if !slices.ContainsFunc(keep, func(x []byte) bool { return bytes.Equal(x, k) }) {
			if err := kr.RemoveKey(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// GossipAddr is where this node gossips.
func (c *Cluster) GossipAddr() string {
	if c.gossip == nil {
		return ""
	}
	return c.gossip.addr
}

// GossipMembers is the number of live gossip members (this node included).
func (c *Cluster) GossipMembers() int {
	if c.gossip == nil {
		return 0
	}
	return c.gossip.ml.NumMembers()
}

// gossipJoinLoop joins the pool through retry_join until it is in, and
// again whenever it finds itself alone.
func (c *Cluster) gossipJoinLoop() {
	defer c.wg.Done()
	g := c.gossip
	b := backoff.New(200*time.Millisecond, 10*time.Second)
	for {
		if len(g.cfg.RetryJoin) > 0 && g.ml.NumMembers() < 2 {
			addrs, err := resolveJoin(c.ctx, g.cfg.RetryJoin)
			if err == nil {
				var n int
				n, err = g.ml.Join(addrs)
				if n > 0 {
					c.log.Info("joined gossip", "contacted", n)
					b.Reset()
				}
			}
			if err != nil {
				c.log.Debug("gossip join: retrying", "err", err)
			}
		}
		if !b.Wait(c.ctx) {
			return
		}
	}
}

// settle is how long the set of servers must stay the same before a node
// bootstraps with it: nodes starting together then agree on one set.
const settle = time.Second

// membershipLoop bootstraps the cluster once enough servers are present;
// from then on the leader's autopilot keeps membership (pilot.run).
func (c *Cluster) membershipLoop() {
	defer c.wg.Done()
	g := c.gossip
	var seen []string
	var seenSince time.Time
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-g.changed:
		case <-tick.C:
		}
		if c.hasConfiguration() {
			g.setClustered()
			return
		}
		if g.cfg.BootstrapExpect == 0 {
			continue
		}
		var alive []member
		someoneClustered := false
		for _, m := range g.snapshot() {
			if m.alive && m.proven {
				alive = append(alive, m)
				someoneClustered = someoneClustered || m.Clustered
			}
		}
		if someoneClustered || len(alive) < g.cfg.BootstrapExpect {
			seen = nil // an existing cluster's leader will add us; or too few yet
			continue
		}
		ids := make([]string, len(alive))
		for i, m := range alive {
			ids[i] = m.ID
		}
		if !slices.Equal(ids, seen) {
			seen, seenSince = ids, time.Now()
			continue
		}
		if time.Since(seenSince) < settle {
			continue
		}
		c.bootstrapExpected(alive[:g.cfg.BootstrapExpect])
	}
}

func (c *Cluster) hasConfiguration() bool {
	servers, err := c.Servers()
	return err == nil && len(servers) > 0
}

// bootstrapExpected forms the cluster: every node of the chosen set (the
// first servers by name) bootstraps with the same configuration, so they
// form one cluster whichever starts first.
func (c *Cluster) bootstrapExpected(chosen []member) {
	var cfg raft.Configuration
	in := false
	for _, m := range chosen {
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Raft)})
		in = in || m.ID == c.cfg.NodeID
	}
	if !in {
		return // the chosen ones form it; the leader then adds this node
	}
	if err := c.raft.BootstrapCluster(cfg).Error(); err != nil && err != raft.ErrCantBootstrap {
		c.log.Warn("bootstrap with expected servers failed", "err", err)
		return
	}
	c.log.Info("bootstrapped the cluster with the expected servers", "servers", len(chosen))
}

// rejoined reports whether a node is not removed, or came back since.
func (c *Cluster) rejoined(id string) bool {
	n, err := c.fsm.Node(id)
	return err != nil || n.Rejoined()
}

// leaveGossip tells the others this node is going, before it stops.
func (c *Cluster) leaveGossip() {
	if c.gossip == nil {
		return
	}
	c.gossip.ml.Leave(2 * time.Second)
	c.gossip.ml.Shutdown()
}

func splitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return h, port, err
}

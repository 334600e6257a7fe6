// Package cluster owns Raft, membership and forwarding. Callers see Apply
// and Barrier; which node leads, elections, and forwarding to the leader are
// hidden behind them. Raft's errors become this package's sentinels here.
package cluster

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/backoff"
	"github.com/quorumca/quorumca/internal/errs"
	"github.com/quorumca/quorumca/signer"
)

var (
	// ErrNoLeader: no leader could be reached within the hold timeout.
	ErrNoLeader = errs.New(errs.Unavailable, "no_leader", "cluster: no leader")
	// ErrNotLeader is only seen between nodes; clients never get it.
	ErrNotLeader = errors.New("cluster: not the leader")
	// ErrTimeout: the cluster did not answer in time (an election, a
	// paused or overloaded member). A write's outcome is then unknown: the
	// caller may try again, and writes are idempotent.
	ErrTimeout = errs.New(errs.Unavailable, "unavailable", "cluster: timed out")
	// ErrShutdown: this node is stopping.
	ErrShutdown = errs.New(errs.Unavailable, "shutting_down", "cluster: node is shutting down")
	// ErrForbidden: a member refused this node's join secret or node
	// certificate.
	ErrForbidden = errors.New("cluster: refused: wrong join secret or no valid node certificate")
)

// Timing holds Raft's clock settings. Zero values take production defaults.
type Timing struct {
	Heartbeat, Election, LeaderLease, Commit time.Duration
	SnapshotInterval                         time.Duration
	SnapshotThreshold, TrailingLogs          uint64
}

// FastTiming suits tests on one machine: elections in a fraction of a second.
func FastTiming() Timing {
	return Timing{Heartbeat: 150 * time.Millisecond, Election: 150 * time.Millisecond,
		LeaderLease: 100 * time.Millisecond, Commit: 5 * time.Millisecond}
}

// Config configures a cluster member.
type Config struct {
	NodeID        string
	Dir           string   // Raft log, stable store and snapshots
	RaftBind      string   // host:port to listen on for Raft
	RaftAdvertise string   // host:port peers dial; defaults to the bound address
	APIAdvertise  string   // host:port of this node's HTTPS API, for forwarding
	Bootstrap     bool     // form a new cluster with this node as its only voter
	Join          []string // https URLs of existing members
	// Secret is the join secret. A node that cannot use the cluster CA key
	// proves it to a member for its node certificate, without sending it
	// (nodecert.go); nothing else takes it.
	Secret string
	// CAFingerprint, if set, pins the cluster CA: the SHA-256 of its public
	// key (SubjectPublicKeyInfo, DER). A node that cannot use the key then
	// takes a node certificate only from a member whose TLS certificate
	// chains to that key, before it sends any proof.
	CAFingerprint []byte
	// Refused, if set, hears of every refused node-certificate request
	// (a wrong proof of the join secret, a replayed challenge, too many
	// attempts): the node logs it and writes it to its audit file.
	Refused     func(r *http.Request, status int, code, message string)
	Timing      Timing
	HoldTimeout time.Duration // how long a write waits for a leader; default 7s
	Logger      *slog.Logger
	Now         func() time.Time
	Registerer  prometheus.Registerer // receives the cluster's metrics; may be nil
	Gossip      *GossipConfig         // nil: membership by bootstrap and join only
	// CAKey is the cluster CA key, the same on every node, if this node can
	// use it; nil: the node gets its certificate from a member with Secret.
	CAKey signer.Key
	// OpenCAKey, if set, is tried again while CAKey is nil and this node
	// has no certificate: a key out of reach at start (its KMS started
	// later, a network blip) is picked up, instead of waiting forever for
	// a member that may be in the same position.
	OpenCAKey   func(context.Context) (signer.Key, error)
	NodeCertTTL time.Duration // default 7 days; renewed at two thirds
}

// Cluster is this node's membership in the Raft group.
type Cluster struct {
	cfg       Config
	fsm       *fsm.FSM
	raft      *raft.Raft
	logs      *raftboltdb.BoltStore
	transport *raft.NetworkTransport
	contact   *contactTransport // Raft's transport, noting when each peer last answered
	snapshots *raft.FileSnapshotStore
	client    *http.Client
	log       *slog.Logger
	// extensions: internal RPCs of other packages, by name (ServeRPC).
	extensions sync.Map

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	applyTime *prometheus.HistogramVec
	batch     *batcher // the leader's group commit
	fwd       *batcher // a follower's batched forwarding

	// reads: this node's read-index rounds; served: the leader's, for
	// other nodes' rounds (readindex.go).
	reads, served *readRounds
	readMetrics   *readMetrics

	gossip *gossip
	pilot  *pilot // with gossip: membership by autopilot, on the leader
	tls    *nodeTLS
	joins  *joinGuard // challenges and failed proofs of the join secret

	readyTerm atomic.Uint64 // the term in which this leader's commit index is known current
	format    atomic.Int32  // the log format this leader writes (format.go)
	formatMu  sync.RWMutex  // lowering format waits for commits in progress
	// formatTerm: the term in which this leader set format; before, in a
	// new term, it writes nothing (the previous term's format is stale).
	formatTerm atomic.Uint64
	// formatKnown: format has been asked of every server in this term;
	// until then a command that needs a newer format waits (Format).
	formatKnown atomic.Bool
	rpc         *rpcTransport

	leaderMu    sync.Mutex
	leaderFuncs []func(ctx context.Context)
	notifyCh    chan bool

	// stopped: Shutdown or Crash ran; the other is then a no-op
	// (memberlist panics on a leave after its shutdown).
	stopped atomic.Bool
}

// Open starts Raft on fsm: it restores or resets local state as needed,
// bootstraps or starts joining, and returns at once.
func Open(cfg Config, f *fsm.FSM) (*Cluster, error) {
	if cfg.NodeID == "" || cfg.Dir == "" || cfg.RaftBind == "" {
		return nil, errors.New("cluster: node id, dir and raft address are required")
	}
	if cfg.HoldTimeout == 0 {
		cfg.HoldTimeout = 7 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NodeCertTTL == 0 {
		cfg.NodeCertTTL = defaultNodeCertTTL
	}
	c := &Cluster{cfg: cfg, fsm: f, log: cfg.Logger.With("component", "cluster"), notifyCh: make(chan bool, 16)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.tls = &nodeTLS{id: cfg.NodeID, ttl: cfg.NodeCertTTL, ready: make(chan struct{}), removedAt: func(id string) time.Time {
		if n, err := f.Node(id); err == nil {
			return n.RemovedAt
		}
		return time.Time{}
	}}
	c.joins = newJoinGuard()
	c.rpc = &rpcTransport{base: c.tls.rpcClientConfig()}
	c.rpc.use(nil) // until this node has its certificate
	c.client = &http.Client{Transport: c.rpc}
	if cfg.CAKey != nil {
		ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
		err := c.tls.adoptKey(ctx, cfg.CAKey)
		if err == nil {
			err = c.ensureNodeCert(ctx)
		}
		cancel()
		if err != nil {
			return nil, fmt.Errorf("cluster: node certificate: %w", err)
		}
	}
	c.applyTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "quorumca_raft_apply_duration_seconds",
		Help:    "Time from proposing a command on the leader until it is committed and applied, by command and outcome.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, []string{"command", "outcome"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(c.applyTime); err != nil {
			return nil, err
		}
	}
	readMetrics, err := newReadMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	c.readMetrics = readMetrics
	c.reads = newReadRounds(c.ctx, cfg.HoldTimeout, c.readMetrics.rounds.WithLabelValues("asked"), c.askReadIndex)
	c.served = newReadRounds(c.ctx, cfg.HoldTimeout, c.readMetrics.rounds.WithLabelValues("answered"),
		func(context.Context) (uint64, error) { return c.leaderIndex() })
	existing, err := c.start()
	if err != nil {
		c.closeStores()
		return nil, err
	}
	if cfg.Gossip != nil {
		if err := c.startGossip(existing); err != nil {
			c.raft.Shutdown().Error()
			c.closeStores()
			return nil, err
		}
	}
	c.batch = newBatcher(c, batchDepth, c.commit)
	c.fwd = newBatcher(c, forwardDepth, c.forwardBatch)
	c.OnLeader(c.formatLoop)
	c.wg.Add(3)
	go c.leaderLoop()
	go c.batch.run()
	go c.fwd.run()
	if len(cfg.Join) > 0 {
		c.wg.Add(1)
		go c.joinLoop()
	}
	c.wg.Add(2)
	go c.announceLoop()
	go c.nodeCertLoop()
	return c, nil
}

func (c *Cluster) start() (existing bool, err error) {
	cfg := c.cfg
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return false, err
	}
	hl := newHCLog(c.log, "raft")
	// Raft's log store deletes as much as it writes (compaction): a hashmap
	// freelist that is not written at every commit keeps commits cheap.
	c.logs, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db"),
		BoltOptions: &bolt.Options{Timeout: 5 * time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true}})
	if err != nil {
		return false, fmt.Errorf("cluster: log store: %w", err)
	}
	c.snapshots, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hl)
	if err != nil {
		return false, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	var adv net.Addr
	if cfg.RaftAdvertise != "" {
		if adv, err = net.ResolveTCPAddr("tcp", cfg.RaftAdvertise); err != nil {
			return false, fmt.Errorf("cluster: raft advertise address: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.RaftBind)
	if err != nil {
		return false, fmt.Errorf("cluster: raft listen: %w", err)
	}
	if adv == nil {
		if tcp := ln.Addr().(*net.TCPAddr); tcp.IP.IsUnspecified() {
			ln.Close()
			return false, errors.New("cluster: raft listens on every address: set raft.advertise")
		}
	}
	// Raft speaks mutual TLS: only nodes with a node certificate may append
	// entries or vote.
	c.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: newTLSStream(ln, adv, c.tls), MaxPool: 3, Timeout: 10 * time.Second, Logger: hl,
	})

	existing, err = raft.HasExistingState(c.logs, c.logs, c.snapshots)
	if err != nil {
		return false, err
	}
	if err := c.reconcileFSM(existing); err != nil {
		return false, err
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	rc.NotifyCh = c.notifyCh
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	// The FSM is a database that survives restarts; copying a snapshot back
	// into it at every start would be wasted work (see fsm/DESIGN.md).
	rc.NoSnapshotRestoreOnStart = true
	t := cfg.Timing
	setIf(&rc.HeartbeatTimeout, t.Heartbeat)
	setIf(&rc.ElectionTimeout, t.Election)
	setIf(&rc.LeaderLeaseTimeout, t.LeaderLease)
	setIf(&rc.CommitTimeout, t.Commit)
	setIf(&rc.SnapshotInterval, t.SnapshotInterval)
	if t.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = t.SnapshotThreshold
	}
	if t.TrailingLogs > 0 {
		rc.TrailingLogs = t.TrailingLogs
	}
	c.contact = &contactTransport{noPipeline: noPipeline{c.transport}}
	c.raft, err = raft.NewRaft(rc, c.fsm, c.logs, c.logs, c.snapshots, c.contact)
	if err != nil {
		return false, fmt.Errorf("cluster: start raft: %w", err)
	}
	if !existing && cfg.Bootstrap {
		err := c.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: c.transport.LocalAddr(),
		}}}).Error()
		if err != nil {
			return false, fmt.Errorf("cluster: bootstrap: %w", err)
		}
		c.log.Info("bootstrapped a new cluster", "node", cfg.NodeID)
	}
	return existing, nil
}

// reconcileFSM makes the state database agree with the Raft state before
// Raft starts. Raft replays only entries after its newest snapshot, and the
// FSM skips entries it already holds; so the FSM must never be behind that
// snapshot, and a node with no Raft state must not keep an old database.
func (c *Cluster) reconcileFSM(existing bool) error {
	if !existing {
		if c.fsm.AppliedIndex() > 0 {
			c.log.Warn("no raft state: discarding state database from an earlier cluster")
			return c.fsm.Reset()
		}
		return nil
	}
	snaps, err := c.snapshots.List()
	if err != nil || len(snaps) == 0 {
		return err
	}
	newest := snaps[0]
	if c.fsm.AppliedIndex() >= newest.Index {
		return nil
	}
	c.log.Warn("state database is behind the newest snapshot: restoring it",
		"applied", c.fsm.AppliedIndex(), "snapshot", newest.Index)
	_, rc, err := c.snapshots.Open(newest.ID)
	if err != nil {
		return err
	}
	return c.fsm.Restore(rc)
}

func setIf(dst *time.Duration, v time.Duration) {
	if v > 0 {
		*dst = v
	}
}

// OnLeader registers fn to run in its own goroutine whenever this node
// becomes leader; its context ends when leadership is lost.
func (c *Cluster) OnLeader(fn func(ctx context.Context)) {
	c.leaderMu.Lock()
	defer c.leaderMu.Unlock()
	c.leaderFuncs = append(c.leaderFuncs, fn)
}

func (c *Cluster) leaderLoop() {
	defer c.wg.Done()
	var term *leaderTerm
	defer func() { term.end() }()
	for {
		select {
		case <-c.ctx.Done():
			return
		case isLeader := <-c.notifyCh:
			term.end()
			term = nil
			if !isLeader {
				c.log.Info("lost leadership")
				continue
			}
			c.log.Info("became leader", "term", c.raft.CurrentTerm())
			c.leaderMu.Lock()
			fns := append([]func(context.Context){}, c.leaderFuncs...)
			c.leaderMu.Unlock()
			term = startTerm(c.ctx, fns)
		}
	}
}

// leaderTerm is the work that runs while this node leads.
type leaderTerm struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startTerm(parent context.Context, fns []func(context.Context)) *leaderTerm {
	ctx, cancel := context.WithCancel(parent)
	t := &leaderTerm{cancel: cancel}
	for _, fn := range fns {
		t.wg.Add(1)
		go func() { defer t.wg.Done(); fn(ctx) }()
	}
	return t
}

func (t *leaderTerm) end() {
	if t != nil {
		t.cancel()
		t.wg.Wait()
	}
}

// announceLoop keeps this node's addresses in the replicated node table so
// any node can forward to it when it leads. It keeps checking: a restored
// snapshot brings another cluster's table.
func (c *Cluster) announceLoop() {
	defer c.wg.Done()
	me := fsm.Node{ID: c.cfg.NodeID, APIAddr: c.cfg.APIAdvertise, RaftAddr: string(c.transport.LocalAddr()), LogFormat: fsm.LogFormat}
	retry := backoff.New(50*time.Millisecond, 2*time.Second)
	for {
		wait := 5 * time.Second
		if cur, err := c.fsm.Node(me.ID); err != nil || !sameAnnouncement(cur, &me) || !cur.Rejoined() {
			if err := c.propose(c.ctx, fsm.CmdNodeUpsert, me); err != nil {
				c.log.Debug("announce: retrying", "err", err)
				if !retry.Wait(c.ctx) {
					return
				}
				continue
			}
			c.log.Info("announced node", "api", me.APIAddr, "raft", me.RaftAddr)
		}
		if !backoff.Sleep(c.ctx, wait) {
			return
		}
	}
}

// sameAnnouncement: the node table holds what a node would announce.
func sameAnnouncement(cur, me *fsm.Node) bool {
	return cur.ID == me.ID && cur.APIAddr == me.APIAddr && cur.RaftAddr == me.RaftAddr && cur.LogFormat == me.LogFormat
}

func (c *Cluster) propose(ctx context.Context, t fsm.CmdType, payload any) error {
	env, err := fsm.NewEnvelope(t, "", payload)
	if err != nil {
		return err
	}
	env.Origin = &fsm.Origin{Actor: "node:" + c.cfg.NodeID}
	return c.Apply(ctx, env)
}

// IsLeader reports whether this node currently leads.
func (c *Cluster) IsLeader() bool { return c.raft.State() == raft.Leader }

// Snapshot takes a Raft snapshot now (and compacts the log).
func (c *Cluster) Snapshot() error { return c.raft.Snapshot().Error() }

// Status is a point-in-time view for health checks.
type Status struct {
	NodeID       string `json:"node"`
	State        string `json:"raft_state"`
	LeaderID     string `json:"leader"`
	LeaderAPI    string `json:"leader_api,omitempty"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LastIndex    uint64 `json:"last_index"`
	// LastContact is how long ago a follower last heard from the leader
	// (0 on the leader).
	LastContact float64 `json:"last_contact_seconds"`
	Voters      int     `json:"voters"`
	NonVoters   int     `json:"nonvoters"`
	// LogFormat is, on the leader, the log format it writes: 0 while a
	// server reads only that (during a rolling upgrade), see format.go.
	LogFormat *int `json:"log_format,omitempty"`
	// ClusterCA is the fingerprint of the cluster CA (hex SHA-256 of its
	// public key), what cluster.ca_fingerprint pins; empty until known.
	ClusterCA string `json:"cluster_ca_fingerprint,omitempty"`
	// Autopilot is, on the leader of a gossip cluster, how autopilot judges
	// each server (autopilot.go).
	Autopilot *AutopilotStatus `json:"autopilot,omitempty"`
}

// CAFingerprint is the hex SHA-256 of the cluster CA's public key, or ""
// while this node knows no anchor yet.
func (c *Cluster) CAFingerprint() string {
	if ca := c.tls.anchor(); ca != nil {
		return hex.EncodeToString(Fingerprint(ca))
	}
	return ""
}

// Status reports this node's view of the cluster.
func (c *Cluster) Status() Status {
	_, id := c.raft.LeaderWithID()
	s := Status{
		NodeID: c.cfg.NodeID, State: c.raft.State().String(), LeaderID: string(id),
		Term: c.raft.CurrentTerm(), AppliedIndex: c.fsm.AppliedIndex(),
		CommitIndex: c.raft.CommitIndex(), LastIndex: c.raft.LastIndex(),
		ClusterCA: c.CAFingerprint(),
	}
	if id != "" {
		if n, err := c.fsm.Node(string(id)); err == nil {
			s.LeaderAPI = n.APIAddr
		}
	}
	if c.raft.State() != raft.Leader {
		if lc := c.raft.LastContact(); !lc.IsZero() {
			s.LastContact = time.Since(lc).Seconds()
		}
	} else {
		f := c.logFormat()
		s.LogFormat = &f
		s.Autopilot = c.autopilotStatus()
	}
	if servers, err := c.Servers(); err == nil {
		for _, srv := range servers {
			if srv.Suffrage == raft.Voter {
				s.Voters++
			} else {
				s.NonVoters++
			}
		}
	}
	return s
}

// RaftAddr is the address peers reach this node's Raft transport at.
func (c *Cluster) RaftAddr() string { return string(c.transport.LocalAddr()) }

// Stats is raft's own counters (last_snapshot_index, num_peers, ...).
func (c *Cluster) Stats() map[string]string { return c.raft.Stats() }

// Servers lists the Raft configuration.
func (c *Cluster) Servers() ([]raft.Server, error) {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

// OtherServers names the servers of the configuration but this node.
func (c *Cluster) OtherServers() []string {
	servers, err := c.Servers()
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range servers {
		if string(s.ID) != c.cfg.NodeID {
			out = append(out, string(s.ID))
		}
	}
	return out
}

// Shutdown stops Raft and background work. It does not hand leadership over;
// the node transfers leadership before calling it on a graceful stop.
func (c *Cluster) Shutdown() error {
	if c.stopped.Swap(true) {
		return nil
	}
	c.leaveGossip()
	c.cancel()
	err := c.raft.Shutdown().Error()
	c.wg.Wait()
	c.client.CloseIdleConnections()
	return errors.Join(err, c.closeStores())
}

// Crash stops Raft and gossip without a word to the others, as a killed
// process would.
func (c *Cluster) Crash() {
	if c.stopped.Swap(true) {
		return
	}
	if c.gossip != nil {
		c.gossip.ml.Shutdown()
	}
	c.cancel()
	c.raft.Shutdown().Error()
	c.wg.Wait()
	c.client.CloseIdleConnections()
	c.closeStores()
}

func (c *Cluster) closeStores() error {
	var errs []error
	if c.transport != nil {
		errs = append(errs, c.transport.Close())
	}
	if c.contact != nil {
		c.contact.stopHeartbeats()
	}
	if c.logs != nil {
		errs = append(errs, c.logs.Close())
	}
	return errors.Join(errs...)
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// Membership with gossip runs on hashicorp/raft-autopilot, wired as Consul
// wires it: the leader adds the servers gossip finds as non-voters
// (addMembers, through the log format gate), autopilot promotes one once it
// has been healthy for the stabilization time, while voters are fewer than
// the voter count, and removes the servers gossip reports dead for longer
// than dead_server_cleanup, never below a safe quorum. Autopilot itself
// never adds a server: its promotions change the suffrage of a server that
// is already replicating the log.

// ErrLogFormat: a server's binary does not read the log formats the cluster
// holds or writes; it is not added (it would panic on its first entry).
var ErrLogFormat = errors.New("cluster: the node cannot read the log")

// ErrAddressInUse: another server of the configuration, one gossip does not
// report dead or gone, is at the Raft address a server asks to be added at.
// Autopilot removes any other server at the address of one it adds, so
// adding it would let a member remove a live voter by naming its address.
var ErrAddressInUse = errors.New("cluster: the raft address is another server's")

const (
	// defaultStabilization is how long a new server must stay healthy
	// before it is promoted to voter (Consul's default).
	defaultStabilization = 10 * time.Second
	// maxTrailingLogs: a server further behind the leader is unhealthy.
	// Four AppendEntries batches (MaxAppendEntries 256): a server within
	// them keeps up.
	maxTrailingLogs = 1024
)

// pilot is the autopilot delegate and promoter of a gossip cluster.
type pilot struct {
	c   *Cluster
	g   *gossip
	ap  *autopilot.Autopilot
	cfg GossipConfig

	removing sync.Map     // raft.ServerID -> struct{}: a removal in flight
	held     sync.Map     // raft.ServerID -> struct{}: a dead voter kept for quorum's sake, said once
	healthy  atomic.Int32 // the cluster's health last notified: 0 none yet, 1 healthy, 2 not

	// termMu guards term, the term of this leader's last KnownServers,
	// and looked, when it first looked in that term.
	termMu sync.Mutex
	term   uint64
	looked time.Time
}

func newPilot(c *Cluster, g *gossip) *pilot {
	p := &pilot{c: c, g: g, cfg: g.cfg}
	update, reconcile := time.Second, 2*time.Second
	if g.cfg.Fast {
		update, reconcile = 100*time.Millisecond, 250*time.Millisecond
	}
	p.ap = autopilot.New(c.raft, p,
		autopilot.WithLogger(newHCLog(c.log, "autopilot")),
		autopilot.WithUpdateInterval(update),
		autopilot.WithReconcileInterval(reconcile),
		autopilot.WithPromoter(p))
	return p
}

// run, while this node leads, runs autopilot and adds the servers gossip
// finds. Autopilot stops when leadership ends (Consul starts it on
// establishing leadership and stops it on revoking it).
func (p *pilot) run(ctx context.Context) {
	p.ap.Start(ctx)
	defer func() { <-p.ap.Stop() }()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	refused := map[string]string{}
	for {
		p.addMembers(refused)
		// A member crosses dead_server_cleanup without a gossip event:
		// ask for a removal round every tick (cheap: no RPC).
		p.ap.RemoveDeadServers()
		select {
		case <-ctx.Done():
			return
		case <-p.g.changed:
		case <-tick.C:
		}
	}
}

// addMembers adds the servers alive in gossip that the configuration lacks
// (or holds at another address). refused remembers why each was refused,
// so a refusal is logged once, not every tick.
func (p *pilot) addMembers(refused map[string]string) {
	c := p.c
	servers, err := c.Servers()
	if err != nil {
		return
	}
	inRaft := map[string]raft.ServerAddress{}
	for _, s := range servers {
		inRaft[string(s.ID)] = s.Address
	}
	for _, m := range p.g.snapshot() {
		addr, ok := inRaft[m.ID]
		switch {
		case !m.alive, ok && string(addr) == m.Raft:
			delete(refused, m.ID)
			continue
		case !m.proven:
			// Anyone with the gossip key can announce a server; one that
			// has not shown a node certificate for its id is not added.
			continue
		case !ok && !c.rejoined(m.ID):
			// Removed by an operator and not back with a fresh node
			// certificate: no node would hear it.
			c.log.Debug("not adding a removed server until it announces itself again", "id", m.ID)
			continue
		}
		if err := c.addServer(m.ID, m.Raft, m.LogFormat); err != nil {
			if refused[m.ID] != err.Error() {
				c.log.Warn("not adding server", "id", m.ID, "raft", m.Raft, "err", err)
			}
			refused[m.ID] = err.Error()
		} else {
			delete(refused, m.ID)
		}
	}
}

// addServer adds a server (or moves one to a new address) through the log
// format gate: a binary that cannot read what the log holds, or what the
// leader writes now, would panic on an entry, so it is not added (nor does
// it start: fsm.Open). formatMu keeps the format from rising until the
// server is in the configuration the leader asks (setFormat). With gossip
// the server comes in as a non-voter, for autopilot to promote; without,
// as a voter at once.
func (c *Cluster) addServer(id, addr string, format int) error {
	c.formatMu.Lock()
	defer c.formatMu.Unlock()
	if have := max(c.fsm.HighestLogFormat(), c.logFormat()); format < have {
		return fmt.Errorf("%w: node %s reads log formats up to %d, and the cluster writes format %d: upgrade its binary before it joins", ErrLogFormat, id, format, have)
	}
	if c.pilot != nil {
		if other := c.pilot.holder(id, addr); other != "" {
			return fmt.Errorf("%w: node %s asks to be added at %s, where %s is and is not known to be gone", ErrAddressInUse, id, addr, other)
		}
		c.log.Info("adding server", "id", id, "raft", addr)
		return translate(c.pilot.ap.AddServer(&autopilot.Server{ID: raft.ServerID(id), Name: id, Address: raft.ServerAddress(addr)}))
	}
	c.log.Info("adding voter", "id", id, "raft", addr)
	return translate(c.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, c.cfg.HoldTimeout).Error())
}

// holder is the server other than id at addr that has not failed ("" if
// none): gossip reports it alive, or the leader heard from it over Raft
// within dead_server_cleanup. A server that is only away (being replaced:
// another replacement may come up at its old address) keeps its place;
// one gone past dead_server_cleanup may be replaced at its address (a node
// reinstalled under a new id).
func (p *pilot) holder(id, addr string) string {
	servers, err := p.c.Servers()
	if err != nil {
		return ""
	}
	gone := map[string]bool{}
	for _, m := range p.g.snapshot() {
		gone[m.ID] = !m.alive && !p.heard(m.ID)
	}
	for _, s := range servers {
		if string(s.Address) == addr && string(s.ID) != id && !gone[string(s.ID)] {
			return string(s.ID)
		}
	}
	return ""
}

// AutopilotConfig: cleanup on; a server is healthy while the leader heard
// from it within a heartbeat timeout (the silence after which Raft itself
// gives up on a leader) and it trails by at most maxTrailingLogs.
func (p *pilot) AutopilotConfig() *autopilot.Config {
	return &autopilot.Config{
		CleanupDeadServers:      true,
		LastContactThreshold:    p.c.heartbeatTimeout(),
		MaxTrailingLogs:         maxTrailingLogs,
		ServerStabilizationTime: p.cfg.Stabilization,
	}
}

// KnownServers is every gossip member, and every server of the
// configuration that gossip does not know (one not heard of since this node
// started, or that joined without gossip): those count as unknown, neither
// promoted nor removed, until Raft has not heard from them for
// dead_server_cleanup; then they have failed. A member dead for
// less than dead_server_cleanup is unknown too; beyond, it has failed. So
// is one gossip says dead or left while the leader heard from it within
// dead_server_cleanup (heard).
func (p *pilot) KnownServers() map[raft.ServerID]*autopilot.Server {
	c := p.c
	out := map[raft.ServerID]*autopilot.Server{}
	for _, m := range p.g.snapshot() {
		st := autopilot.NodeAlive
		switch {
		case m.ID == c.cfg.NodeID:
		case m.alive && !m.proven:
			// Alive in gossip under this id, but not proven to be it
			// (yet): neither promoted nor removed.
			st = autopilot.NodeUnknown
		case !m.alive && p.heard(m.ID):
			// Raft, over mutual TLS, heard from it within
			// dead_server_cleanup: whatever gossip says (any holder of the
			// gossip key can say a member left or died), it is not gone;
			// neither promoted nor removed.
			st = autopilot.NodeUnknown
		case !m.alive && time.Since(m.since) >= p.cfg.DeadServerCleanup:
			st = autopilot.NodeFailed
		case !m.alive:
			st = autopilot.NodeUnknown
		}
		out[raft.ServerID(m.ID)] = &autopilot.Server{ID: raft.ServerID(m.ID), Name: m.ID, Address: raft.ServerAddress(m.Raft),
			NodeStatus: st, NodeType: autopilot.NodeVoter, Meta: map[string]string{"api": m.API}}
	}
	servers, _ := c.Servers()
	for _, s := range servers {
		if _, ok := out[s.ID]; !ok {
			// Not in gossip: not heard of since this node started, or it
			// joined without gossip. Unknown while Raft hears from it (or
			// this leader has not led for dead_server_cleanup yet); failed
			// once Raft has been silent that long, or a server that left
			// while no current process watched would stay a voter forever.
			st := autopilot.NodeUnknown
			if !p.heard(string(s.ID)) {
				st = autopilot.NodeFailed
			}
			out[s.ID] = &autopilot.Server{ID: s.ID, Name: string(s.ID), Address: s.Address,
				NodeStatus: st, NodeType: autopilot.NodeVoter}
		}
	}
	self := raft.ServerID(c.cfg.NodeID)
	if s, ok := out[self]; ok {
		s.NodeStatus, s.IsLeader = autopilot.NodeAlive, c.IsLeader()
	}
	return out
}

// heard reports whether this leader heard from member id over Raft
// (mutual TLS) within dead_server_cleanup, counting its first look at the
// servers in its term as heard: a new leader has heard from no one yet,
// and cannot tell who is silent until it has led that long. A key holder
// can keep saying a live member is gone (it can take the member's gossip
// name after a forged leave and hold it); then Raft's silence alone, as
// long as gossip's, makes the member failed: a new leader's first look,
// or a hiccup of Raft, does not.
func (p *pilot) heard(id string) bool {
	if id == p.c.cfg.NodeID {
		return true
	}
	term := p.c.raft.CurrentTerm()
	p.termMu.Lock()
	if term != p.term {
		p.term, p.looked = term, time.Now()
	}
	at := p.looked
	p.termMu.Unlock()
	if last := p.c.contact.lastContact(raft.ServerID(id)); last.After(at) {
		at = last
	}
	return time.Since(at) < p.cfg.DeadServerCleanup
}

// FetchServerStats reads what each server last answered this leader's
// AppendEntries (contact.go): no RPC, and a server of an older release is
// judged like any other. One never heard from gets a negative contact,
// which autopilot counts as unhealthy (no stats would keep the last ones).
func (p *pilot) FetchServerStats(_ context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	c := p.c
	out := make(map[raft.ServerID]*autopilot.ServerStats, len(servers))
	for id := range servers {
		if string(id) == c.cfg.NodeID {
			term, _ := strconv.ParseUint(c.raft.Stats()["last_log_term"], 10, 64)
			out[id] = &autopilot.ServerStats{LastTerm: term, LastIndex: c.raft.LastIndex()}
			continue
		}
		at, term, index := c.contact.peer(id)
		st := &autopilot.ServerStats{LastContact: -1, LastTerm: term, LastIndex: index}
		if !at.IsZero() {
			st.LastContact = time.Since(at)
		}
		out[id] = st
	}
	return out
}

// NotifyState logs a change of the cluster's health.
func (p *pilot) NotifyState(s *autopilot.State) {
	h := int32(2)
	if s.Healthy {
		h = 1
	}
	if p.healthy.Swap(h) != h {
		p.c.log.Info("autopilot: cluster health", "healthy", s.Healthy, "failure_tolerance", s.FailureTolerance)
	}
}

// RemoveFailedServer takes a server that failed (dead or left, and silent
// over Raft, past dead_server_cleanup) out of the configuration. Its node
// certificates stay valid: it is presumed crashed, not hostile, and comes
// back when it returns (an operator's remove-peer voids them).
func (p *pilot) RemoveFailedServer(s *autopilot.Server) {
	if _, busy := p.removing.LoadOrStore(s.ID, struct{}{}); busy {
		return
	}
	c := p.c
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer p.removing.Delete(s.ID)
		c.log.Info("removing dead server", "id", s.ID, "status", s.NodeStatus)
		if err := c.raft.RemoveServer(s.ID, 0, c.cfg.HoldTimeout).Error(); err != nil {
			c.log.Warn("removing dead server failed", "id", s.ID, "err", err)
		}
	}()
}

// The promoter. Every server may become a voter (NodeVoter), but only as
// many are voters as the voter count asks.

func (p *pilot) GetServerExt(*autopilot.Config, *autopilot.ServerState) any { return nil }
func (p *pilot) GetStateExt(*autopilot.Config, *autopilot.State) any        { return nil }
func (p *pilot) IsPotentialVoter(t autopilot.NodeType) bool                 { return t == autopilot.NodeVoter }

func (p *pilot) GetNodeTypes(_ *autopilot.Config, s *autopilot.State) map[raft.ServerID]autopilot.NodeType {
	out := make(map[raft.ServerID]autopilot.NodeType, len(s.Servers))
	for id := range s.Servers {
		out[id] = autopilot.NodeVoter
	}
	return out
}

// CalculatePromotionsAndDemotions promotes non-voters that have been
// healthy for the whole stabilization time, the longest stable first,
// while voters are fewer than the voter count. It demotes no one and
// moves no leadership. Unlike autopilot's StablePromoter, it waits the
// stabilization time after a leader change too: a new leader knows
// nothing of a server's past health, and the cluster has its quorum
// meanwhile (it elected a leader).
func (p *pilot) CalculatePromotionsAndDemotions(c *autopilot.Config, s *autopilot.State) autopilot.RaftChanges {
	var changes autopilot.RaftChanges
	want := p.cfg.Voters - len(s.Voters)
	if want <= 0 {
		return changes
	}
	now := time.Now()
	var stable []raft.ServerID
	for id, srv := range s.Servers {
		if srv.State == autopilot.RaftNonVoter && srv.Server.NodeStatus == autopilot.NodeAlive && srv.Health.IsStable(now, c.ServerStabilizationTime) {
			stable = append(stable, id)
		}
	}
	autopilot.SortServers(stable, s)
	changes.Promotions = stable[:min(want, len(stable))]
	return changes
}

// FilterFailedServerRemovals keeps the removals the old rule allowed: only
// servers that failed (gone, and silent over Raft, past
// dead_server_cleanup, whether gossip knows them or not), never one only
// autopilot calls "stale", and a voter only while a majority of the other
// voters is alive. Autopilot then also
// removes at most a minority of the potential voters per round.
func (p *pilot) FilterFailedServerRemovals(_ *autopilot.Config, s *autopilot.State, failed *autopilot.FailedServers) *autopilot.FailedServers {
	gone := func(srv *autopilot.Server) bool {
		return srv.NodeStatus == autopilot.NodeFailed
	}
	out := &autopilot.FailedServers{}
	for _, srv := range failed.FailedNonVoters {
		if gone(srv) {
			out.FailedNonVoters = append(out.FailedNonVoters, srv)
		}
	}
	for _, srv := range failed.FailedVoters {
		if !gone(srv) {
			continue
		}
		remaining, alive := 0, 0
		for _, id := range s.Voters {
			if id == srv.ID {
				continue
			}
			remaining++
			if o := s.Servers[id]; o != nil && (o.Server.NodeStatus == autopilot.NodeAlive || string(id) == p.c.cfg.NodeID) {
				alive++
			}
		}
		if alive < remaining/2+1 {
			if _, told := p.held.LoadOrStore(srv.ID, struct{}{}); !told {
				p.c.log.Warn("not removing dead server: too few voters alive", "id", srv.ID)
			}
			continue
		}
		p.held.Delete(srv.ID)
		out.FailedVoters = append(out.FailedVoters, srv)
	}
	return out
}

// AutopilotStatus is the leader's autopilot view, for /v1/health.
type AutopilotStatus struct {
	Healthy          bool              `json:"healthy"`
	FailureTolerance int               `json:"failure_tolerance"`
	Servers          []AutopilotServer `json:"servers"`
}

// AutopilotServer is one server as autopilot judges it.
type AutopilotServer struct {
	ID string `json:"id"`
	// Status is what gossip says: alive, failed (dead or left, and silent
	// over Raft, past dead_server_cleanup), or unknown (gone for less, or
	// not known to gossip).
	Status    string `json:"status"`
	RaftState string `json:"raft_state"` // leader, voter, non-voter
	Healthy   bool   `json:"healthy"`
	// Stable: healthy for the stabilization time, so a non-voter may be
	// promoted.
	Stable      bool      `json:"stable"`
	StableSince time.Time `json:"stable_since"`
	LastContact float64   `json:"last_contact_seconds"`
	LastIndex   uint64    `json:"last_index"`
}

// autopilotStatus is autopilot's state while this node leads; nil
// otherwise, or before its first look at the servers.
func (c *Cluster) autopilotStatus() *AutopilotStatus {
	if c.pilot == nil || !c.IsLeader() {
		return nil
	}
	s := c.pilot.ap.GetState()
	if s == nil || len(s.Servers) == 0 {
		return nil
	}
	out := &AutopilotStatus{Healthy: s.Healthy, FailureTolerance: s.FailureTolerance}
	now := time.Now()
	for id, srv := range s.Servers {
		out.Servers = append(out.Servers, AutopilotServer{
			ID: string(id), Status: string(srv.Server.NodeStatus), RaftState: string(srv.State),
			Healthy: srv.Health.Healthy, Stable: srv.Health.IsStable(now, c.pilot.cfg.Stabilization),
			StableSince: srv.Health.StableSince, LastContact: srv.Stats.LastContact.Seconds(), LastIndex: srv.Stats.LastIndex,
		})
	}
	slices.SortFunc(out.Servers, func(a, b AutopilotServer) int { return strings.Compare(a.ID, b.ID) })
	return out
}

var (
	_ autopilot.Promoter               = (*pilot)(nil)
	_ autopilot.ApplicationIntegration = (*pilot)(nil)
)

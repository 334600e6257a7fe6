package cluster

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// A paused member (killed with no reset, stopped, cut off) answers nothing,
// not even a TLS handshake. Propagate waits for members the leader is in
// contact with, and for those only until they fall silent, so it returns
// long before the RPC transport's handshake timeout and names the member
// that did not confirm.
func TestPropagateDoesNotWaitForAPausedMember(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, _, api := u.member("n1", true, nil, nil)
	testwait.For(t, 20*time.Second, "n1 to lead", leader.IsLeader)
	join := []string{"https://" + api.addr}
	follower, _, _ := u.member("n2", false, join, nil)
	// n3's Raft and API ports are reached through proxies that can go
	// silent, as a paused process would.
	var proxies []*silenceProxy
	u.memberWith("n3", false, join, nil, func(cfg *Config) {
		raftProxy, apiProxy := newSilenceProxy(t, cfg.RaftBind), newSilenceProxy(t, cfg.APIAdvertise)
		cfg.RaftAdvertise, cfg.APIAdvertise = raftProxy.addr, apiProxy.addr
		proxies = append(proxies, raftProxy, apiProxy)
	})
	testwait.For(t, 20*time.Second, "three voters, every address announced", func() bool {
		servers, _ := leader.Servers()
		for _, id := range []string{"n1", "n2", "n3"} {
			if _, err := follower.fsm.Node(id); err != nil {
				return false
			}
		}
		return len(servers) == 3
	})
	ctx := context.Background()
	if confirmed, _, err := leader.Propagate(ctx); err != nil || !slices.Equal(confirmed, []string{"n1", "n2", "n3"}) {
		t.Fatalf("every member is up: confirmed by %v: %v", confirmed, err)
	}

	for _, p := range proxies {
		p.silence()
	}
	if err := leader.propose(ctx, fsm.CmdNodeUpsert, fsm.Node{ID: "x", APIAddr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	for _, from := range []*Cluster{leader, follower} {
		start := time.Now()
		confirmed, unconfirmed, err := from.Propagate(ctx)
		took := time.Since(start)
		t.Logf("Propagate on %s with n3 paused: %s, confirmed by %v: %v", from.cfg.NodeID, took.Round(time.Millisecond), confirmed, err)
		if took >= rpcHandshakeTimeout/2 {
			t.Errorf("Propagate on %s waited %s for a paused member; the handshake timeout is %s", from.cfg.NodeID, took.Round(time.Millisecond), rpcHandshakeTimeout)
		}
		if !slices.Equal(confirmed, []string{"n1", "n2"}) || !slices.Equal(unconfirmed, []string{"n3"}) {
			t.Errorf("Propagate on %s: confirmed by %v, unconfirmed %v; want n1 n2, and n3", from.cfg.NodeID, confirmed, unconfirmed)
		}
		if err == nil || !strings.Contains(err.Error(), "n3") {
			t.Errorf("Propagate on %s does not name the paused member: %v", from.cfg.NodeID, err)
		}
	}
}

// A member whose Raft answers but whose API port accepts connections and
// never completes a handshake (a wedged listener) costs Propagate about a
// heartbeat timeout, not the RPC transport's handshake timeout.
func TestPropagateBoundsTheConnectionToAWedgedMember(t *testing.T) {
	u := newUpgradeCluster(t)
	leader, _, api := u.member("n1", true, nil, nil)
	testwait.For(t, 20*time.Second, "n1 to lead", leader.IsLeader)
	join := []string{"https://" + api.addr}
	u.member("n2", false, join, nil)
	u.memberWith("n3", false, join, nil, func(cfg *Config) { cfg.APIAdvertise = stalledListener(t) })
	testwait.For(t, 20*time.Second, "three voters, every address announced", func() bool {
		servers, _ := leader.Servers()
		for _, id := range []string{"n2", "n3"} {
			if _, err := leader.fsm.Node(id); err != nil || !leader.inContact(id) {
				return false
			}
		}
		return len(servers) == 3
	})
	start := time.Now()
	confirmed, unconfirmed, err := leader.Propagate(context.Background())
	took := time.Since(start)
	t.Logf("Propagate with n3's API wedged: %s, confirmed by %v: %v", took.Round(time.Millisecond), confirmed, err)
	if took >= rpcHandshakeTimeout/2 {
		t.Errorf("Propagate waited %s for a wedged member; the handshake timeout is %s", took.Round(time.Millisecond), rpcHandshakeTimeout)
	}
	if !slices.Equal(confirmed, []string{"n1", "n2"}) || !slices.Equal(unconfirmed, []string{"n3"}) {
		t.Errorf("confirmed by %v, unconfirmed %v; want n1 n2, and n3", confirmed, unconfirmed)
	}
}

// stalledListener accepts TCP connections and never reads from them.
func stalledListener(t *testing.T) string {
	return listenTracked(t, func(in net.Conn) []net.Conn { return []net.Conn{in} })
}

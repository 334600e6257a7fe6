package node

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/quorumca/quorumca/internal/freeport"
)

// oldRevokeWait is what a revocation used to wait while a node was paused:
// the internal RPC's TLS handshake timeout.
const oldRevokeWait = 2 * time.Second

// A revocation does not wait for a paused node, and its answer names the
// nodes that confirmed it and the one that did not.
func TestRevokeDoesNotWaitForAPausedNode(t *testing.T) {
	c := newTestCluster(t, 2)
	var proxies []*pauseProxy
	paused := c.addNodeWith(func(cfg *Config) {
		cfg.APIListen, cfg.RaftListen = freeport.For(t), freeport.For(t)
		api, raft := newPauseProxy(t, cfg.APIListen), newPauseProxy(t, cfg.RaftListen)
		cfg.APIAdvertise, cfg.RaftAdvertise = api.addr(), raft.addr()
		proxies = append(proxies, api, raft)
	})
	c.WaitConverged()
	var via *testNode // a follower that keeps running
	for _, f := range c.Followers() {
		if f != paused {
			via = f
		}
	}
	first, second := c.enrollHolder(via, "first.example"), c.enrollHolder(via, "second.example")
	type answer struct {
		Serial      string   `json:"serial"`
		ConfirmedBy []string `json:"confirmed_by"`
		Unconfirmed []string `json:"unconfirmed"`
	}
	revoke := func(h *holder) (answer, time.Duration) {
		start := time.Now()
		r := c.do(via, "POST", "/v1/revoke", map[string]string{"serial": h.s.Serial, "reason": "keyCompromise"}, c.admin)
		took := time.Since(start)
		if r.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		var a answer
		r.decode(t, &a)
		return a, took
	}

	a, _ := revoke(first)
	if !slices.Equal(a.ConfirmedBy, []string{"n1", "n2", "n3"}) || len(a.Unconfirmed) != 0 {
		t.Fatalf("every node up: confirmed by %v, unconfirmed %v", a.ConfirmedBy, a.Unconfirmed)
	}

	for _, p := range proxies {
		p.pause()
	}
	a, took := revoke(second)
	t.Logf("revocation with %s paused: %s, confirmed by %v, unconfirmed %v", paused.cfg.NodeName, took.Round(time.Millisecond), a.ConfirmedBy, a.Unconfirmed)
	if took >= oldRevokeWait/2 {
		t.Errorf("the revocation took %s with a node paused; it used to wait %s", took.Round(time.Millisecond), oldRevokeWait)
	}
	var up []string
	for _, tn := range c.nodes {
		if tn != paused {
			up = append(up, tn.cfg.NodeName)
		}
	}
	if !slices.Equal(a.ConfirmedBy, up) || !slices.Equal(a.Unconfirmed, []string{paused.cfg.NodeName}) {
		t.Errorf("confirmed by %v, unconfirmed %v; want %v, and %s", a.ConfirmedBy, a.Unconfirmed, up, paused.cfg.NodeName)
	}
}

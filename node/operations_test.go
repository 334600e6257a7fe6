package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumca/quorumca/client"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// stateOf reads what a snapshot must carry over, from one node.
func stateOf(t *testing.T, f *fsm.FSM) string {
	t.Helper()
	far := time.Now().Add(1000 * time.Hour)
	certs, _, err := f.SearchCerts(fsm.CertQuery{Limit: 1000, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	toks, _, _ := f.OutstandingTokens("", time.Now(), nil, 1000)
	provs, _ := f.Provisioners()
	auths, _ := f.Authorities()
	admins, _ := f.Admins()
	b, _ := json.Marshal([]any{certs, toks, provs, auths, admins, far.IsZero()})
	return string(b)
}

// Snapshot save on cluster 1, restore on a new cluster 2: records, tokens,
// revocations, provisioners and admins are equal, and cluster 2 carries on.
func TestSnapshotSaveAndRestoreOnNewCluster(t *testing.T) {
	c1 := newTestCluster(t, 3)
	n := c1.nodes[1]
	if r := c1.do(n, "POST", "/v1/admin/provisioners", fleetProvisioner(".fleet.example"), c1.admin); r.status != http.StatusCreated {
		t.Fatal(r.status)
	}
	revoked := c1.enrollHolder(n, "gone.example")
	c1.enrollHolder(c1.nodes[2], "kept.example")
	c1.do(n, "POST", "/v1/revoke", map[string]string{"serial": revoked.s.Serial, "reason": "keyCompromise"}, c1.admin)
	pending := c1.mintToken(n, "1h", "later.example") // outstanding: must still work after the restore
	c1.WaitConverged()

	r := c1.do(c1.Followers()[0], "GET", "/v1/admin/snapshot", nil, c1.admin)
	if r.status != http.StatusOK {
		t.Fatalf("save: %d %s", r.status, r.body)
	}
	snap := r.body
	want := stateOf(t, c1.nodes[0].node.FSM())

	c2 := newTestCluster(t, 3)
	// A damaged file is refused and changes nothing.
	bad := bytes.Clone(snap)
	bad[len(bad)-100] ^= 0xff
	before := c2.nodes[0].node.FSM().Digest()
	if r := c2.do(c2.nodes[1], "POST", "/v1/admin/snapshot", bad, c2.admin); r.status != http.StatusBadRequest {
		t.Fatalf("damaged snapshot: %d %s", r.status, r.body)
	}
	if c2.nodes[0].node.FSM().Digest() != before {
		t.Fatal("a refused restore changed state")
	}
	if r := c2.do(c2.Followers()[1], "POST", "/v1/admin/snapshot", snap, c2.admin); r.status != http.StatusNoContent {
		t.Fatalf("restore through a follower: %d %s", r.status, r.body)
	}
	c2.admin = c1.admin // the restored state has cluster 1's admins
	testwait.For(t, 20*time.Second, "every node of cluster 2 to hold cluster 1's state", func() bool {
		for _, tn := range c2.nodes {
			if stateOf(t, tn.node.FSM()) != want {
				return false
			}
		}
		return true
	})
	c2.WaitConverged()
	// Cluster 2 goes on: cluster 1's outstanding token, revocation status,
	// and new work through any node.
	c2.sign(c2.nodes[2], pending, newCSR(t, newKey(t), "later.example"))
	var rec struct{ Status string }
	c2.do(c2.nodes[0], "GET", "/v1/certs/"+revoked.s.Serial, nil, "").decode(t, &rec)
	if rec.Status != "revoked" {
		t.Errorf("revocation lost: %q", rec.Status)
	}
	c2.enrollHolder(c2.nodes[1], "new.example")
}

func TestRaftOperations(t *testing.T) {
	c := newTestCluster(t, 3)
	n := c.nodes[0]
	var peers struct {
		Peers []struct {
			ID, Suffrage string
			Leader       bool
		}
	}
	c.do(n, "GET", "/v1/admin/raft/peers", nil, c.admin).decode(t, &peers)
	leaders := 0
	for _, p := range peers.Peers {
		if p.Leader {
			leaders++
		}
	}
	if len(peers.Peers) != 3 || leaders != 1 {
		t.Fatalf("peers %+v", peers)
	}
	target := c.Followers()[1]
	if r := c.do(n, "POST", "/v1/admin/raft/transfer-leadership", map[string]string{"to": target.cfg.NodeName}, c.admin); r.status != http.StatusNoContent {
		t.Fatalf("transfer: %d %s", r.status, r.body)
	}
	testwait.For(t, 10*time.Second, "the chosen node to lead", func() bool { return target.node.Cluster().IsLeader() })
	if r := c.do(n, "POST", "/v1/admin/raft/transfer-leadership", map[string]string{"to": "nope"}, c.admin); r.status != http.StatusBadRequest {
		t.Errorf("transfer to an unknown node: %d %s", r.status, r.body)
	}

	gone := c.Followers()[0]
	c.Stop(gone)
	if r := c.do(target, "DELETE", "/v1/admin/raft/peers/"+gone.cfg.NodeName, nil, c.admin); r.status != http.StatusNoContent {
		t.Fatalf("remove peer: %d %s", r.status, r.body)
	}
	c.do(target, "GET", "/v1/admin/raft/peers", nil, c.admin).decode(t, &peers)
	if len(peers.Peers) != 2 {
		t.Fatalf("after removal: %+v", peers)
	}
	// The remaining two still take writes.
	c.enrollHolder(target, "after-removal.example")
	if r := c.do(target, "DELETE", "/v1/admin/raft/peers/nope", nil, c.admin); r.status != http.StatusBadRequest {
		t.Errorf("remove unknown peer: %d", r.status)
	}
}

// A rolling restart of every node, one at a time, under a steady load of
// enrollments through every node: no request fails. The client library
// retries only what is safe (refused connections, 503s).
func TestRollingRestartUnderLoad(t *testing.T) {
	c := newTestCluster(t, 3)
	var addrs []string
	for _, tn := range c.nodes {
		addrs = append(addrs, "https://"+tn.node.APIAddr())
	}
	var failures atomic.Int64
	var done atomic.Int64
	var errs sync.Map
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		cl, err := client.New(client.Config{Addr: addrs[w%3], Addrs: addrs, CAFile: c.pki.RootFile, AdminToken: c.admin, RetryFor: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := newKey(t)
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("w%d-%d.example", w, i)
				toks, err := cl.MintTokens(context.Background(), client.TokenRequest{SANs: []string{name}})
				if err == nil {
					_, err = cl.Sign(context.Background(), newCSR(t, key, name), toks[0].Token)
				}
				if err != nil {
					failures.Add(1)
					errs.Store(err.Error(), true)
					continue
				}
				done.Add(1)
			}
		}()
	}
	for _, tn := range c.nodes {
		before := done.Load()
		testwait.For(t, 30*time.Second, "progress before the restart", func() bool { return done.Load() > before+5 })
		c.Stop(tn)
		c.Restart(tn)
		c.WaitMembers()
	}
	before := done.Load()
	testwait.For(t, 30*time.Second, "progress after the last restart", func() bool { return done.Load() > before+5 })
	stop()
	wg.Wait()
	c.WaitConverged() // the load stopped: every node holds the same state
	errs.Range(func(k, _ any) bool { t.Log("error:", k); return true })
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed across the rolling restart", n, n+done.Load())
	}
	t.Logf("%d enrollments, no failure, across restarts of all 3 nodes", done.Load())
}

package node

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/internal/archive"
	"github.com/quorumca/quorumca/internal/testwait"
)

// Scheduled snapshots: only the leader writes them, a new leader carries on
// after the old one stops, and the newest one restores into a new cluster
// with what was committed before it was taken.
func TestScheduledSnapshotsAreTakenByTheLeaderAndRestore(t *testing.T) {
	dir := t.TempDir()
	c1 := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) {
		c.configure = func(cfg *Config) {
			cfg.SnapshotDestination, cfg.SnapshotInterval = "file://"+dir, 300*time.Millisecond
		}
	})
	store, err := archive.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	// newestAfter waits for a snapshot taken at or after at (names have
	// seconds: one named a second later certainly was).
	newestAfter := func(what string, at time.Time) string {
		t.Helper()
		var newest string
		testwait.For(t, 30*time.Second, what, func() bool {
			names, err := store.List(context.Background(), snapshotPrefix)
			if err != nil || len(names) == 0 {
				return false
			}
			newest = names[len(names)-1]
			taken, ok := snapshotTime(newest)
			return ok && !taken.Before(at.Truncate(time.Second).Add(time.Second))
		})
		return newest
	}

	n := c1.nodes[1]
	revoked := c1.enrollHolder(n, "gone.example")
	kept := c1.enrollHolder(c1.nodes[2], "kept.example")
	c1.do(n, "POST", "/v1/revoke", map[string]string{"serial": revoked.s.Serial, "reason": "keyCompromise"}, c1.admin)
	c1.WaitConverged()
	newestAfter("a snapshot after the writes", time.Now())

	leader := c1.Leader()
	for _, tn := range c1.nodes {
		ok := testutil.ToFloat64(tn.node.snapMetrics.count.WithLabelValues("ok"))
		if (tn == leader) != (ok > 0) {
			t.Errorf("%s (leader: %v) wrote %v snapshots: only the leader writes them", tn.cfg.NodeName, tn == leader, ok)
		}
	}

	// The leader goes; the next one carries on.
	c1.Stop(leader)
	stopped := time.Now()
	newest := newestAfter("a snapshot by the next leader", stopped)
	snap, err := os.ReadFile(filepath.Join(dir, newest))
	if err != nil {
		t.Fatal(err)
	}

	c2 := newTestCluster(t, 3)
	if r := c2.do(c2.nodes[1], "POST", "/v1/admin/snapshot", snap, c2.admin); r.status != http.StatusNoContent {
		t.Fatalf("restore %s: %d %s", newest, r.status, r.body)
	}
	c2.admin = c1.admin
	testwait.For(t, 20*time.Second, "cluster 2 to hold the records", func() bool {
		return c2.do(c2.nodes[2], "GET", "/v1/certs/"+kept.s.Serial, nil, "").status == http.StatusOK
	})
	var rec struct{ Status string }
	c2.do(c2.nodes[0], "GET", "/v1/certs/"+revoked.s.Serial, nil, "").decode(t, &rec)
	if rec.Status != "revoked" {
		t.Errorf("the revocation is not in the restored snapshot: %q", rec.Status)
	}
	c2.enrollHolder(c2.nodes[1], "after-restore.example")
}

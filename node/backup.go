package node

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumca/quorumca/internal/archive"
	"github.com/quorumca/quorumca/internal/backoff"
)

// Scheduled backups: the leader writes a snapshot of the whole state (what
// quorumca operator snapshot save writes, checksummed, for snapshot
// restore) to the snapshot destination every SnapshotInterval. Only the
// leader does, so there is one copy per interval; a new leader reads the
// newest object's time from its name and carries on from there, so a
// leadership change neither skips an interval nor doubles one.

const snapshotPrefix = "quorumca-"

// snapshotName names a snapshot by the time it was taken, so names sort
// in time order.
func snapshotName(at time.Time) string {
	return snapshotPrefix + at.UTC().Format("20060102T150405Z") + ".snap"
}

// snapshotTime is the time in a snapshot's name; false for other objects.
func snapshotTime(name string) (time.Time, bool) {
	s, ok := strings.CutPrefix(name, snapshotPrefix)
	if !ok {
		return time.Time{}, false
	}
	s, ok = strings.CutSuffix(s, ".snap")
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102T150405Z", s)
	return t, err == nil
}

type snapshotMetrics struct {
	last  prometheus.Gauge
	count *prometheus.CounterVec
}

func newSnapshotMetrics(reg prometheus.Registerer) *snapshotMetrics {
	m := &snapshotMetrics{
		last: prometheus.NewGauge(prometheus.GaugeOpts{Name: "quorumca_snapshot_last_success_timestamp_seconds",
			Help: "When this node last wrote a scheduled snapshot to the snapshot destination (Unix time; 0: never)."}),
		count: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "quorumca_snapshots_total",
			Help: "Scheduled snapshots this node wrote, by outcome (ok, error)."}, []string{"outcome"}),
	}
	m.count.WithLabelValues("ok")
	m.count.WithLabelValues("error")
	reg.MustRegister(m.last, m.count)
	return m
}

// snapshotLoop runs while this node leads.
func (n *Node) snapshotLoop(ctx context.Context) {
	interval := n.cfg.SnapshotInterval
	last, err := n.newestSnapshot(ctx)
	if err != nil && ctx.Err() == nil {
		n.log.Warn("snapshots: cannot list the destination; taking one now", "destination", n.snapshots.String(), "err", err)
	}
	for {
		if !backoff.Sleep(ctx, time.Until(last.Add(interval))) {
			return
		}
		at := time.Now()
		name, size, err := n.writeSnapshot(ctx, at)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			n.snapMetrics.count.WithLabelValues("error").Inc()
			n.log.Warn("snapshots: scheduled snapshot failed; retrying", "destination", n.snapshots.String(), "err", err)
			// Again in a minute (or the interval, if shorter).
			last = at.Add(min(time.Minute, interval) - interval)
			continue
		}
		n.snapMetrics.count.WithLabelValues("ok").Inc()
		n.snapMetrics.last.Set(float64(at.Unix()))
		n.log.Info("snapshots: wrote a snapshot", "destination", n.snapshots.String(), "name", name, "bytes", size)
		last = at
	}
}

// newestSnapshot is the time of the newest snapshot at the destination
// (zero if there is none).
func (n *Node) newestSnapshot(ctx context.Context) (time.Time, error) {
	names, err := n.snapshots.List(ctx, snapshotPrefix) // in order
	if err != nil {
		return time.Time{}, err
	}
	for i := len(names) - 1; i >= 0; i-- {
		if t, ok := snapshotTime(names[i]); ok {
			return t, nil
		}
	}
	return time.Time{}, nil
}

// writeSnapshot writes the state to a file in the data directory, then
// that file to the destination: an object there is a whole snapshot.
func (n *Node) writeSnapshot(ctx context.Context, at time.Time) (string, int64, error) {
	f, err := os.CreateTemp(n.cfg.DataDir, "snapshot-upload-*")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := n.cluster.WriteSnapshot(ctx, f); err != nil {
		return "", 0, fmt.Errorf("snapshot: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	name := snapshotName(at)
	if err := n.snapshots.PutFile(ctx, name, f); err != nil {
		return "", 0, err
	}
	return name, st.Size(), nil
}

// openSnapshots opens the destination at start, so a wrong bucket or
// missing access stops the node rather than the first backup.
func (n *Node) openSnapshots(ctx context.Context, reg prometheus.Registerer) error {
	if n.cfg.SnapshotDestination == "" {
		return nil
	}
	s, err := archive.Open(ctx, n.cfg.SnapshotDestination)
	if err != nil {
		return fmt.Errorf("node: snapshot: %w", err)
	}
	n.snapshots, n.snapMetrics = s, newSnapshotMetrics(reg)
	return nil
}

package cluster

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// threeMembers starts a leader and two followers that know its address;
// index counts the read-index RPCs the leader serves.
func threeMembers(t *testing.T) (leader, f1, f2 *Cluster, index *atomic.Int64) {
	t.Helper()
	u := newUpgradeCluster(t)
	leader, _, api := u.member("n1", true, nil, nil)
	testwait.For(t, 20*time.Second, "n1 to lead", leader.IsLeader)
	index = countPath(api, pathIndex)
	join := []string{"https://" + api.addr}
	f1, _, _ = u.member("n2", false, join, nil)
	f2, _, _ = u.member("n3", false, join, nil)
	testwait.For(t, 20*time.Second, "three voters whose followers know the leader's address", func() bool {
		servers, _ := leader.Servers()
		for _, f := range []*Cluster{f1, f2} {
			_, id := f.raft.LeaderWithID()
			if _, err := f.fsm.Node(string(id)); id != "n1" || err != nil {
				return false
			}
		}
		return len(servers) == 3
	})
	return leader, f1, f2, index
}

// countPath counts the requests a member's API serves at path.
func countPath(api *apiServer, path string) *atomic.Int64 {
	var n atomic.Int64
	inner := *api.handler.Load()
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			n.Add(1)
		}
		inner.ServeHTTP(w, r)
	})
	api.handler.Store(&h)
	return &n
}

// Reads that miss at once on a follower share read-index rounds: the
// leader answers a handful of index RPCs, not one per read.
func TestConcurrentBarriersShareReadIndexRounds(t *testing.T) {
	_, follower, _, index := threeMembers(t)
	const readers = 200
	before := index.Load()
	start := make(chan struct{})
	errs := make(chan error, readers)
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			<-start
			errs <- follower.Barrier(context.Background())
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("barrier: %v", err)
		}
	}
	rpcs := index.Load() - before
	t.Logf("%d concurrent barriers: %d read-index RPCs", readers, rpcs)
	if rpcs > readers/5 {
		t.Fatalf("%d concurrent barriers on a follower sent %d read-index RPCs to the leader, want at most %d", readers, rpcs, readers/5)
	}
}

// A write acknowledged through one node is visible to a read through a
// follower that begins after the acknowledgement, while other reads keep
// read-index rounds in flight on that follower (so a round that started
// before the write was acknowledged is always there to be wrongly joined).
func TestReadThroughFollowerSeesAcknowledgedWrite(t *testing.T) {
	leader, reader, writer, _ := threeMembers(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				reader.Barrier(ctx)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		through := writer
		if i%2 == 1 {
			through = leader
		}
		id := fmt.Sprintf("lin-%d", i)
		env, err := fsm.DecodeEnvelope(tokenCreate(t, id, "secret-"+id))
		if err != nil {
			t.Fatal(err)
		}
		if err := through.Apply(ctx, env); err != nil {
			t.Fatalf("write %s: %v", id, err)
		}
		if err := reader.Barrier(ctx); err != nil {
			t.Fatalf("read barrier after %s: %v", id, err)
		}
		if _, err := reader.fsm.TokenByID(id); err != nil {
			t.Fatalf("write %s was acknowledged, then a read through the follower did not see it: %v", id, err)
		}
	}
}

// A caller that arrives while a round is in flight gets the next round's
// index, never the one in flight, which may predate its call.
func TestReadRoundInFlightIsNotJoined(t *testing.T) {
	release := make(chan uint64)
	started := make(chan struct{}, 10)
	rr := newReadRounds(context.Background(), time.Minute, prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}),
		func(context.Context) (uint64, error) {
			started <- struct{}{}
			return <-release, nil
		})
	got := make(chan uint64, 3)
	ask := func() {
		idx, err := rr.index(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- idx
	}
	receive := func(ch <-chan uint64) uint64 {
		t.Helper()
		select {
		case v := <-ch:
			return v
		case <-time.After(10 * time.Second):
			t.Fatal("no answer in 10 s")
			return 0
		}
	}
	go ask()
	<-started // round 1 is in flight
	go ask()
	go ask()
	testwait.For(t, 20*time.Second, "two callers to wait for the next round", func() bool {
		rr.mu.Lock()
		defer rr.mu.Unlock()
		return rr.next != nil && rr.next.callers == 2
	})
	release <- 1
	if idx := receive(got); idx != 1 {
		t.Fatalf("the first caller got index %d, want round 1's", idx)
	}
	<-started // round 2, shared by both latecomers
	release <- 2
	for range 2 {
		if idx := receive(got); idx != 2 {
			t.Fatalf("a caller that arrived during round 1 got index %d, want round 2's", idx)
		}
	}
	select {
	case <-started:
		t.Fatal("a third round ran for two callers that could share one")
	default:
	}
}

package cluster

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// A leader that takes a follower's RPCs and never answers (a paused
// process): the follower's writes and reads end in ErrTimeout, which the API
// answers with 503, never in a bare context error, which it would answer
// with 500.
func TestUnansweredLeaderIsATimeout(t *testing.T) {
	u := newUpgradeCluster(t)
	hold := func(cfg *Config) { cfg.HoldTimeout = 300 * time.Millisecond }
	leader, _, api := u.memberWith("n1", true, nil, nil, hold)
	testwait.For(t, 20*time.Second, "n1 to lead", leader.IsLeader)
	follower, _, _ := u.memberWith("n2", false, []string{"https://" + api.addr}, nil, hold)
	testwait.For(t, 20*time.Second, "n2 to know the leader's address", func() bool {
		_, id := follower.raft.LeaderWithID()
		_, err := follower.fsm.Node(string(id))
		return id == "n1" && err == nil
	})
	inner := *api.handler.Load()
	var paused http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == pathApplyBatch || r.URL.Path == pathIndex {
			<-r.Context().Done()
			return
		}
		inner.ServeHTTP(w, r)
	})
	api.handler.Store(&paused)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	env, err := fsm.DecodeEnvelope(tokenCreate(t, "paused", "secret-paused"))
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.Apply(ctx, env); !errors.Is(err, ErrTimeout) {
		t.Errorf("write through the follower: %v, want ErrTimeout", err)
	}
	if err := follower.Barrier(ctx); !errors.Is(err, ErrTimeout) {
		t.Errorf("read barrier on the follower: %v, want ErrTimeout", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the caller's own deadline ended first")
	}
}

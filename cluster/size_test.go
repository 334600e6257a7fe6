package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// bigTokenCreate is a token command whose encoded envelope has about size
// bytes (a property value carries the bulk).
func bigTokenCreate(t *testing.T, id string, size int) *fsm.Envelope {
	t.Helper()
	h := sha256.Sum256([]byte(id))
	env, err := fsm.NewEnvelope(fsm.CmdTokenCreate, "", fsm.TokenCreate{Tokens: []fsm.Token{{
		ID: id, Hash: h[:], SANs: []string{id + ".example"}, ExpiresAt: time.Now().Add(time.Hour),
		Properties: map[string]string{"bulk": strings.Repeat("x", size)},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// A command too large to forward is refused as too large, on a follower
// and on the leader alike, before anything is proposed; a large one within
// the limit is forwarded and committed.
func TestOversizedCommandIsRefusedBeforeProposing(t *testing.T) {
	leader, follower, _, _ := threeMembers(t)
	ctx := context.Background()
	for _, c := range []*Cluster{follower, leader} {
		err := c.Apply(ctx, bigTokenCreate(t, "huge", MaxCommandBytes+1))
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("a command over %d bytes through %s: %v, want ErrTooLarge", MaxCommandBytes, c.cfg.NodeID, err)
		}
	}
	// (Entries of several MiB can cost the leader its lease with test
	// timings on a loaded machine; token batches use entries of 512 KiB.)
	// On a loaded machine the leader may lose its lease while replicating
	// it: the outcome is then unknown, and the command is sent again until
	// it commits or was committed already.
	for attempt := 0; ; attempt++ {
		err := follower.Apply(ctx, bigTokenCreate(t, "big", 512<<10))
		if err == nil || (attempt > 0 && errors.Is(err, fsm.ErrConflict)) {
			break
		}
		if !errors.Is(err, ErrNoLeader) || attempt == 4 {
			t.Fatalf("a 512 KiB command through a follower (attempt %d): %v", attempt+1, err)
		}
	}
	// Committed is not yet applied everywhere: leadership may have moved
	// while the entry was replicated, so wait for this member to apply it.
	testwait.For(t, 20*time.Second, "the committed 512 KiB command to be applied", func() bool {
		_, err := leader.fsm.TokenByID("big")
		return err == nil
	})
	if _, err := leader.fsm.TokenByID("huge"); err == nil {
		t.Fatal("the refused command was applied")
	}
}

// The size Apply checks bounds the encoding a follower forwards.
func TestEncodedSizeBoundsTheEncoding(t *testing.T) {
	for _, origin := range []*fsm.Origin{nil, {Actor: "admin:ops/3f2a", Remote: "[2001:db8::1]:443"}} {
		env := bigTokenCreate(t, "t", 1000)
		env.ID, env.Origin, env.Time = "0123456789abcdef", origin, -1
		env.Type, env.Version = 1<<16-1, 1<<16-1 // the widest varints
		data, err := env.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if n := encodedSize(env); n < len(data) || n > len(data)+64 {
			t.Fatalf("encodedSize %d for an encoding of %d bytes", n, len(data))
		}
	}
}

// The batcher never packs large commands past the batch size, so a batch
// of commands that are each within the limit always fits one forwarding
// RPC.
func TestBatchesOfLargeCommandsFitOneRPC(t *testing.T) {
	c := &Cluster{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	defer c.cancel()
	type sent struct{ bytes, commands int }
	batches := make(chan sent, 16)
	b := newBatcher(c, 1, func(batch []*proposal) {
		var envs [][]byte
		for _, p := range batch {
			envs = append(envs, p.data)
			p.done <- proposalResult{}
		}
		batches <- sent{len(fsm.EncodeBatch(envs)), len(batch)}
	})
	// Queued before the batcher runs, as writes that arrive while an RPC
	// is in flight.
	sizes := []int{3 << 20, MaxCommandBytes, 4 << 20, 100, 1 << 20}
	for _, n := range sizes {
		b.queue <- &proposal{data: make([]byte, n), done: make(chan proposalResult, 1)}
	}
	c.wg.Add(1)
	go b.run()
	for n := 0; n < len(sizes); {
		s := <-batches
		if s.bytes > maxRPCBody {
			t.Fatalf("a batch of %d commands, %d bytes: more than one forwarding RPC carries (%d)", s.commands, s.bytes, maxRPCBody)
		}
		n += s.commands
	}
}

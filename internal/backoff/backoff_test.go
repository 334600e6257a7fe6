package backoff

import (
	"context"
	"testing"
	"time"
)

func TestStepsDoubleUpToTheCapWithJitter(t *testing.T) {
	b := New(time.Second, 8*time.Second)
	steps := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, step := range steps {
		if d := b.Next(); d < step/2 || d > step {
			t.Fatalf("attempt %d: %s, want %s-%s", i, d, step/2, step)
		}
	}
	b.Reset()
	if d := b.Next(); d < time.Second/2 || d > time.Second {
		t.Fatalf("after Reset: %s, want the first step again", d)
	}
}

func TestJitterSpansTheRange(t *testing.T) {
	const step = 1000 * time.Nanosecond
	lo, hi := step, time.Duration(0)
	for range 2000 {
		d := New(step, step).Next()
		if d < step/2 || d > step {
			t.Fatalf("%s outside %s-%s", d, step/2, step)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	// 2000 uniform draws over 501 values leave no gap near either end.
	if lo > step/2+20 || hi < step-20 {
		t.Fatalf("draws span only %s-%s of %s-%s", lo, hi, step/2, step)
	}
}

func TestZeroBaseNeverWaits(t *testing.T) {
	b := New(0, time.Second)
	for range 3 {
		if d := b.Next(); d != 0 {
			t.Fatalf("zero base gave %s", d)
		}
	}
}

func TestWaitEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if New(time.Hour, time.Hour).Wait(ctx) {
		t.Fatal("Wait reported a full wait on a cancelled context")
	}
	if time.Since(start) > time.Second {
		t.Fatalf("Wait took %s after cancel", time.Since(start))
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if New(time.Hour, time.Hour).Wait(ctx) || time.Since(start) > 10*time.Second {
		t.Fatalf("a wait cancelled midway returned after %s", time.Since(start))
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep on a live context reported cancel")
	}
}

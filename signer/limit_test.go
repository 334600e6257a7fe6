package signer

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLimiterCapsConcurrencyAndSheds(t *testing.T) {
	l := NewLimiter(Options{Concurrency: 3, MaxWait: 50 * time.Millisecond}, 8)
	ctx := context.Background()
	var releases []func(bool)
	for range 3 {
		r, err := l.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	if _, err := l.Acquire(ctx); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("fourth acquire: %v", err)
	}
	releases[0](false)
	r, err := l.Acquire(ctx)
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	r(false)
}

func TestLimiterBacksOffOnThrottling(t *testing.T) {
	l := NewLimiter(Options{Concurrency: 16}, 0)
	ctx := context.Background()
	for range 3 {
		r, _ := l.Acquire(ctx)
		r(true)
	}
	if got := l.Limit(); got != 2 {
		t.Fatalf("limit after 3 throttles: %d, want 16/8 = 2", got)
	}
	for range 200 {
		r, _ := l.Acquire(ctx)
		r(false)
	}
	if got := l.Limit(); got != 16 {
		t.Fatalf("limit after successes: %d, want back to 16", got)
	}
}

func TestLimiterHoldsCapUnderLoad(t *testing.T) {
	l := NewLimiter(Options{Concurrency: 4, MaxWait: 5 * time.Second}, 0)
	var in, peak atomic.Int32
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := l.Acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			n := in.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(time.Millisecond) // hold the slot: the work being limited
			in.Add(-1)
			r(false)
		}()
	}
	wg.Wait()
	if peak.Load() > 4 || l.Peak() > 4 {
		t.Fatalf("peak %d in flight, cap 4", peak.Load())
	}
}

func TestLimiterRateBudget(t *testing.T) {
	l := NewLimiter(Options{Concurrency: 100, Rate: 10, Burst: 2, MaxWait: 20 * time.Millisecond}, 0)
	ctx := context.Background()
	ok, shed := 0, 0
	for range 10 {
		r, err := l.Acquire(ctx)
		switch {
		case err == nil:
			ok++
			r(false)
		case errors.Is(err, ErrOverloaded):
			shed++
		default:
			t.Fatal(err)
		}
	}
	// The burst of 2 passes; the rest would wait 100 ms each, more than
	// MaxWait allows, so they are shed at once.
	if ok != 2 || shed != 8 {
		t.Fatalf("%d passed, %d shed", ok, shed)
	}
}

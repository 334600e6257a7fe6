// Package backoff spaces the retries of a loop: capped exponential steps
// with jitter, so callers that failed together do not retry together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields retry delays. The first step is base and each later one
// doubles, up to max; a delay is drawn uniformly from [step/2, step].
// It is not safe for concurrent use.
type Backoff struct{ base, max, step time.Duration }

// New returns a Backoff whose first step is base, capped at max.
func New(base, max time.Duration) *Backoff { return &Backoff{base: base, max: max} }

// Next returns the delay before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.step == 0 {
		b.step = b.base
	} else {
		b.step = min(2*b.step, b.max)
	}
	return b.step/2 + rand.N(b.step/2+1)
}

// Reset starts again from the first step, after a success.
func (b *Backoff) Reset() { b.step = 0 }

// Wait sleeps for Next; false if ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Next()) }

// Sleep waits d; false if ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

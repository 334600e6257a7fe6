package signer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter keeps one key's use on this node within its budget: a token bucket
// (the operator's share of a quota) and a concurrency cap that halves when
// the backend throttles and grows back by one per cap's worth of successes
// (additive increase, multiplicative decrease). A caller that cannot get
// budget within MaxWait is refused with ErrOverloaded, so the API sheds load
// instead of queueing without bound.
type Limiter struct {
	bucket  *rate.Limiter
	max     int
	maxWait time.Duration

	mu       sync.Mutex
	limit    float64 // current cap, 1..max
	inflight int
	peak     int
	freed    chan struct{} // closed and replaced when a slot frees
}

// NewLimiter builds a limiter from options; defaultConcurrency applies when
// the options name none.
func NewLimiter(o Options, defaultConcurrency int) *Limiter {
	max := o.Concurrency
	if max <= 0 {
		max = defaultConcurrency
	}
	l := &Limiter{max: max, limit: float64(max), maxWait: o.MaxWait, freed: make(chan struct{})}
	if l.maxWait <= 0 {
		l.maxWait = 2 * time.Second
	}
	if o.Rate > 0 {
		burst := o.Burst
		if burst <= 0 {
			burst = max
		}
		l.bucket = rate.NewLimiter(rate.Limit(o.Rate), burst)
	}
	return l
}

// Acquire takes a slot and a token. release must be called once, saying
// whether the backend throttled the call.
func (l *Limiter) Acquire(ctx context.Context) (release func(throttled bool), err error) {
	deadline := time.Now().Add(l.maxWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for {
		l.mu.Lock()
		if l.inflight < int(l.limit) {
			l.inflight++
			l.peak = max(l.peak, l.inflight)
			l.mu.Unlock()
			break
		}
		freed := l.freed
		l.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-freed:
			t.Stop()
		case <-t.C:
			return nil, fmt.Errorf("%w: %d signatures in flight for this key", ErrOverloaded, l.Limit())
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if l.bucket != nil {
		r := l.bucket.Reserve()
		if delay := r.Delay(); time.Now().Add(delay).After(deadline) {
			r.Cancel()
			l.release(false)
			return nil, fmt.Errorf("%w: rate budget of %.0f/s spent", ErrOverloaded, float64(l.bucket.Limit()))
		} else if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				r.Cancel()
				l.release(false)
				return nil, ctx.Err()
			}
		}
	}
	var once sync.Once
	return func(throttled bool) { once.Do(func() { l.release(throttled) }) }, nil
}

func (l *Limiter) release(throttled bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if throttled {
		l.limit = max(1, l.limit/2)
	} else if l.limit < float64(l.max) {
		l.limit = min(float64(l.max), l.limit+1/l.limit)
	}
	close(l.freed)
	l.freed = make(chan struct{})
}

// Limit is the current concurrency cap.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.limit)
}

// Peak is the most signatures ever in flight at once.
func (l *Limiter) Peak() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peak
}

// Package keyrate limits events per key (a client address, a certificate
// lineage) with a token bucket each, in bounded memory: the least recently
// seen keys are forgotten first, so a flood of distinct keys costs a
// bounded map, never unbounded growth.
package keyrate

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter allows each key Rate events per second with bursts of Burst.
type Limiter struct {
	rate  rate.Limit
	burst int
	max   int

	mu   sync.Mutex
	keys map[string]*list.Element
	lru  list.List // of *entry, most recent at the front
}

type entry struct {
	key string
	lim *rate.Limiter
}

// DefaultMaxKeys bounds a Limiter's memory when New is given 0.
const DefaultMaxKeys = 10000

// New makes a limiter of perSecond events per key, bursts of burst, that
// remembers at most maxKeys keys (0: DefaultMaxKeys). A forgotten key
// starts again with a full bucket, so maxKeys should exceed the number of
// keys that are limited at any one time.
func New(perSecond float64, burst, maxKeys int) *Limiter {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Limiter{rate: rate.Limit(perSecond), burst: max(burst, 1), max: maxKeys, keys: map[string]*list.Element{}}
}

// Allow reports whether an event for key may happen now, and counts it.
func (l *Limiter) Allow(key string) bool { return l.AllowAt(key, time.Now()) }

// AllowAt is Allow at a given time (for tests).
func (l *Limiter) AllowAt(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limiter(key).AllowN(now, 1)
}

// Delay returns how long until an event for key would be allowed, without
// counting one: the Retry-After of a refusal.
func (l *Limiter) Delay(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	r := l.limiter(key).ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return d
}

func (l *Limiter) limiter(key string) *rate.Limiter {
	if e, ok := l.keys[key]; ok {
		l.lru.MoveToFront(e)
		return e.Value.(*entry).lim
	}
	if l.lru.Len() >= l.max {
		old := l.lru.Back()
		l.lru.Remove(old)
		delete(l.keys, old.Value.(*entry).key)
	}
	lim := rate.NewLimiter(l.rate, l.burst)
	l.keys[key] = l.lru.PushFront(&entry{key: key, lim: lim})
	return lim
}

// Len is the number of keys remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

package authority

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// ocspCache keeps signed OCSP answers, least recently used first out, in
// a bounded number of bytes: the hot tier in front of the OCSPStore on
// disk. Only answers for certificates this cluster issued are ever put
// here, so the working set is bounded by what was issued: requests for
// made-up serials cannot push real answers out.
type ocspCache struct {
	mu    sync.Mutex
	max   int // bytes; 0: DefaultOCSPCacheBytes
	size  int
	m     map[string]*list.Element
	order list.List // of *ocspEntry, most recently used at the front
}

type ocspEntry struct {
	key   string
	der   []byte
	stale time.Time // signed afresh from then on: half the answer's validity
}

// ocspEntryOverhead is roughly what an entry costs beyond its key and
// answer (map slot, list element, entry).
const ocspEntryOverhead = 160

func (e *ocspEntry) size() int { return len(e.key) + len(e.der) + ocspEntryOverhead }

func (c *ocspCache) get(key string, now time.Time) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*ocspEntry)
	if !now.Before(e.stale) {
		c.remove(el)
		return nil, false
	}
	c.order.MoveToFront(el)
	return e.der, true
}

func (c *ocspCache) put(key string, der []byte, stale time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*list.Element{}
	}
	if c.max == 0 {
		c.max = DefaultOCSPCacheBytes
	}
	if el, ok := c.m[key]; ok {
		c.remove(el)
	}
	e := &ocspEntry{key: key, der: der, stale: stale}
	if e.size() > c.max {
		return
	}
	c.m[key] = c.order.PushFront(e)
	c.size += e.size()
	for c.size > c.max {
		c.remove(c.order.Back())
	}
}

func (c *ocspCache) remove(el *list.Element) {
	e := el.Value.(*ocspEntry)
	c.order.Remove(el)
	delete(c.m, e.key)
	c.size -= e.size()
}

// len is the number of answers kept.
func (c *ocspCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// flight lets concurrent requests for the same answer share one signature:
// the first signs, the others wait for its result.
type flight struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

type flightCall struct {
	done chan struct{}
	der  []byte
	err  error
}

// do runs fn once for key among concurrent callers: the first runs it,
// the others wait for its result or for their ctx to end.
func (f *flight) do(ctx context.Context, key string, fn func() ([]byte, error)) ([]byte, error) {
	f.mu.Lock()
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.der, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.calls == nil {
		f.calls = map[string]*flightCall{}
	}
	c := &flightCall{done: make(chan struct{}), err: errFlightAborted}
	f.calls[key] = c
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(c.done)
	}()
	c.der, c.err = fn()
	return c.der, c.err
}

// errFlightAborted is what waiters get if the call they waited for panicked.
var errFlightAborted = errors.New("authority: shared OCSP signature aborted")

package node

import (
	"container/list"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quorumca/quorumca/internal/keyrate"
)

// connLimiter caps, per client address, the connections a listener keeps
// open and those of them idle between requests: one client cannot hold a
// node's goroutines, buffers and descriptors with thousands of
// connections, nor park hundreds of idle keep-alives. The address is the
// device's own behind a balancer that sends PROXY headers (the wrapped
// listener resolves them); IPv6 clients count per /64, which one host
// usually has whole.
//
// The address is read on the connection's first read, in its own
// goroutine (the TLS handshake's): a PROXY header is read then, and
// reading it in Accept would let one slow client stall every other's
// accept. Idle connections are tracked through the server's ConnState
// hook. When an address has more than maxIdle idle, those idle longer
// than idleGrace are closed, longest idle first, as a client's pool would
// drop them: closing a connection the client is just reusing fails its
// request, and in a burst connections are idle for milliseconds between
// requests. A new connection beyond maxConns takes the place of the
// address's longest idle one, or, with none idle, fails its handshake.
type connLimiter struct {
	maxConns, maxIdle int

	mu    sync.Mutex
	addrs map[string]*addrConns

	open    prometheus.Gauge
	idle    prometheus.Gauge
	refused prometheus.Counter
	culled  prometheus.Counter
}

type addrConns struct {
	open  int
	idle  list.List   // of *limitedConn, longest idle first
	sweep *time.Timer // set while a cull of idle connections is due
}

// Defaults: enough for a fleet enrolling at once behind one NAT address,
// or a load test, far below what exhausts a node (the systemd unit allows
// 65,536 descriptors).
const (
	defaultMaxConnsPerClient     = 4096
	defaultMaxIdleConnsPerClient = 64
	idleGrace                    = 5 * time.Second
)

var errTooManyConns = errors.New("too many connections from this client address")

func newConnLimiter(listener string, maxConns, maxIdle int, reg prometheus.Registerer) *connLimiter {
	if maxConns <= 0 {
		maxConns = defaultMaxConnsPerClient
	}
	if maxIdle <= 0 {
		maxIdle = defaultMaxIdleConnsPerClient
	}
	labels := prometheus.Labels{"listener": listener}
	l := &connLimiter{maxConns: maxConns, maxIdle: min(maxIdle, maxConns), addrs: map[string]*addrConns{},
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "quorumca_listener_connections",
			Help: "Open client connections.", ConstLabels: labels}),
		idle: prometheus.NewGauge(prometheus.GaugeOpts{Name: "quorumca_listener_idle_connections",
			Help: "Client connections idle between requests.", ConstLabels: labels}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "quorumca_listener_connections_refused_total",
			Help: "Connections closed at once: their client address had max_connections_per_client open, none idle.", ConstLabels: labels}),
		culled: prometheus.NewCounter(prometheus.CounterOpts{Name: "quorumca_listener_idle_connections_closed_total",
			Help: "Idle connections closed because their client address had more than max_idle_connections_per_client idle, or max_connections_per_client open.", ConstLabels: labels}),
	}
	if reg != nil {
		reg.MustRegister(l.open, l.idle, l.refused, l.culled)
	}
	return l
}

// wrap returns a listener whose connections l counts.
func (l *connLimiter) wrap(ln net.Listener) net.Listener { return &limitedListener{Listener: ln, l: l} }

type limitedListener struct {
	net.Listener
	l *connLimiter
}

func (ll *limitedListener) Accept() (net.Conn, error) {
	c, err := ll.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &limitedConn{Conn: c, l: ll.l}, nil
}

type limitedConn struct {
	net.Conn
	l         *connLimiter
	admit     sync.Once
	admitted  bool // written once, in admit
	closeOnce sync.Once

	// guarded by l.mu
	key       string
	counted   bool // in its address's open count
	closed    bool
	idle      *list.Element
	idleSince time.Time
}

// check counts the connection in at its first read or write, or refuses it.
func (c *limitedConn) check() error {
	c.admit.Do(func() {
		key := keyrate.Source(c.Conn.RemoteAddr().String()) // reads a PROXY header, if one is due
		var evict *limitedConn
		defer func() { evict.closeConn() }()
		l := c.l
		l.mu.Lock()
		defer l.mu.Unlock()
		if c.closed { // while its PROXY header was awaited
			return
		}
		a := l.addrs[key]
		if a == nil {
			a = &addrConns{}
			l.addrs[key] = a
		}
		if a.open >= l.maxConns {
			if a.idle.Len() == 0 {
				l.refused.Inc()
				if a.open == 0 {
					delete(l.addrs, key)
				}
				return
			}
			evict = l.uncountIdle(a, a.idle.Front())
		}
		a.open++
		l.open.Inc()
		c.admitted, c.key, c.counted = true, key, true
	})
	if !c.admitted {
		return errTooManyConns
	}
	return nil
}

// uncountIdle takes an idle connection out of its address's counts, to be
// closed (closeConn) once l.mu is released.
func (l *connLimiter) uncountIdle(a *addrConns, e *list.Element) *limitedConn {
	c := a.idle.Remove(e).(*limitedConn)
	c.idle, c.counted = nil, false
	l.idle.Dec()
	a.open--
	l.open.Dec()
	l.culled.Inc()
	return c
}

// closeConn closes c (if not nil): the server's read fails and it drops
// the connection.
func (c *limitedConn) closeConn() {
	if c != nil {
		c.Close()
	}
}

func (c *limitedConn) Read(b []byte) (int, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *limitedConn) Write(b []byte) (int, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *limitedConn) Close() error {
	c.closeOnce.Do(func() {
		l := c.l
		l.mu.Lock()
		defer l.mu.Unlock()
		c.closed = true
		a := l.addrs[c.key]
		if !c.counted || a == nil {
			return
		}
		if c.idle != nil {
			a.idle.Remove(c.idle)
			c.idle = nil
			l.idle.Dec()
		}
		c.counted = false
		a.open--
		l.open.Dec()
		if a.open == 0 {
			if a.sweep != nil {
				a.sweep.Stop()
			}
			delete(l.addrs, c.key)
		}
	})
	return c.Conn.Close()
}

// connState is the http.Server's ConnState hook.
func (l *connLimiter) connState(nc net.Conn, st http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*limitedConn)
	if !ok {
		return
	}
	var cull []*limitedConn
	l.mu.Lock()
	a := l.addrs[c.key]
	switch {
	case !c.counted || a == nil:
	case st == http.StateIdle:
		if c.idle == nil {
			c.idle, c.idleSince = a.idle.PushBack(c), time.Now()
			l.idle.Inc()
		}
		cull = l.cullIdle(c.key, a)
	case c.idle != nil: // active again, or gone
		a.idle.Remove(c.idle)
		c.idle = nil
		l.idle.Dec()
	}
	l.mu.Unlock()
	for _, v := range cull {
		v.closeConn()
	}
}

// cullIdle takes out of the counts, to be closed, the idle connections of
// an address beyond maxIdle that have been idle idleGrace, and schedules a
// later cull for those not idle as long yet. l.mu is held.
func (l *connLimiter) cullIdle(key string, a *addrConns) []*limitedConn {
	var out []*limitedConn
	now := time.Now()
	for a.idle.Len() > l.maxIdle {
		e := a.idle.Front()
		wait := e.Value.(*limitedConn).idleSince.Add(idleGrace).Sub(now)
		if wait > 0 {
			if a.sweep == nil {
				a.sweep = time.AfterFunc(wait, func() { l.sweep(key) })
			}
			break
		}
		out = append(out, l.uncountIdle(a, e))
	}
	return out
}

func (l *connLimiter) sweep(key string) {
	var cull []*limitedConn
	l.mu.Lock()
	if a := l.addrs[key]; a != nil {
		a.sweep = nil
		cull = l.cullIdle(key, a)
	}
	l.mu.Unlock()
	for _, v := range cull {
		v.closeConn()
	}
}

// idleOf is the number of idle connections of a client address.
func (l *connLimiter) idleOf(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.addrs[key]; a != nil {
		return a.idle.Len()
	}
	return 0
}

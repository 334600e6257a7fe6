package node

import (
	"container/list"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
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
// accept. A connection over the cap fails that read, so its handshake
// fails and the server closes it. Idle connections are tracked through the
// server's ConnState hook; when an address has too many, its longest idle
// is closed, as a client's pool would drop it first.
type connLimiter struct {
	maxConns, maxIdle int

	mu    sync.Mutex
	addrs map[string]*addrConns

	open    prometheus.Gauge
	refused prometheus.Counter
	culled  prometheus.Counter
}

type addrConns struct {
	open int
	idle list.List // of *limitedConn, longest idle first
}

// Defaults: enough for a load test or a NAT of busy devices on one
// address, far below what exhausts a node.
const (
	defaultMaxConnsPerClient     = 512
	defaultMaxIdleConnsPerClient = 64
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
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "quorumca_listener_connections_refused_total",
			Help: "Connections closed at once: their client address had max_connections_per_client open.", ConstLabels: labels}),
		culled: prometheus.NewCounter(prometheus.CounterOpts{Name: "quorumca_listener_idle_connections_closed_total",
			Help: "Idle connections closed because their client address had more than max_idle_connections_per_client.", ConstLabels: labels}),
	}
	if reg != nil {
		reg.MustRegister(l.open, l.refused, l.culled)
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
	admitted  bool
	key       string
	idle      *list.Element // guarded by l.mu
	closeOnce sync.Once
}

// clientKey is what the caps count by: the IP, or an IPv6 address's /64.
func clientKey(a net.Addr) string {
	var ip net.IP
	switch v := a.(type) {
	case *net.TCPAddr:
		ip = v.IP
	default:
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			return a.String()
		}
		ip = net.ParseIP(host)
		if ip == nil {
			return host
		}
	}
	if ip.To4() == nil && len(ip) == net.IPv6len {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

func (c *limitedConn) check() error {
	c.admit.Do(func() {
		key := clientKey(c.Conn.RemoteAddr()) // reads a PROXY header, if one is due
		l := c.l
		l.mu.Lock()
		defer l.mu.Unlock()
		a := l.addrs[key]
		if a == nil {
			a = &addrConns{}
			l.addrs[key] = a
		}
		if a.open >= l.maxConns {
			l.refused.Inc()
			if a.open == 0 {
				delete(l.addrs, key)
			}
			return
		}
		a.open++
		l.open.Inc()
		c.admitted, c.key = true, key
	})
	if !c.admitted {
		return errTooManyConns
	}
	return nil
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
		a := l.addrs[c.key]
		if !c.admitted || a == nil {
			return
		}
		if c.idle != nil {
			a.idle.Remove(c.idle)
			c.idle = nil
		}
		a.open--
		l.open.Dec()
		if a.open == 0 {
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
	var cull *limitedConn
	l.mu.Lock()
	a := l.addrs[c.key]
	switch {
	case !c.admitted || a == nil:
	case st == http.StateIdle:
		if c.idle == nil {
			c.idle = a.idle.PushBack(c)
		}
		if a.idle.Len() > l.maxIdle {
			cull = a.idle.Remove(a.idle.Front()).(*limitedConn)
			cull.idle = nil
		}
	case c.idle != nil: // active again, or gone
		a.idle.Remove(c.idle)
		c.idle = nil
	}
	l.mu.Unlock()
	if cull != nil {
		l.culled.Inc()
		cull.Close() // the server's read fails and it drops the connection
	}
}

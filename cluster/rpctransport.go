package cluster

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// rpcTransport carries internal RPCs. Each node certificate gets its own
// http.Transport, so no pooled connection made with an older certificate,
// or none, is reused once a new one is in place.
type rpcTransport struct {
	base *tls.Config
	cur  atomic.Pointer[http.Transport]
}

// A member that was killed, is paused or is cut off answers nothing, not
// even a reset. Without a bound, a write forwarded to a leader that just
// died waits on its connection until the client gives up, long after a new
// leader was elected; with these, the connection is found dead in about
// two seconds and the write is retried with the new leader.
const (
	rpcDialTimeout      = 2 * time.Second
	rpcHandshakeTimeout = 2 * time.Second
	rpcPingAfter        = time.Second // of silence on a connection
	rpcPingTimeout      = time.Second
)

func newRPCHTTPTransport(base *tls.Config, cert *tls.Certificate) *http.Transport {
	cfg := base.Clone()
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Transport{
		TLSClientConfig:     cfg,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: rpcDialTimeout}).DialContext,
		TLSHandshakeTimeout: rpcHandshakeTimeout,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: rpcPingAfter, PingTimeout: rpcPingTimeout},
	}
}

// use switches to connections presenting cert (nil: none). The old
// transport's connections close as they fall idle.
func (t *rpcTransport) use(cert *tls.Certificate) {
	if old := t.cur.Swap(newRPCHTTPTransport(t.base, cert)); old != nil {
		old.CloseIdleConnections()
		time.AfterFunc(2*time.Minute, old.CloseIdleConnections) // after in-flight calls return
	}
}

func (t *rpcTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.cur.Load().RoundTrip(r)
}

func (t *rpcTransport) CloseIdleConnections() { t.cur.Load().CloseIdleConnections() }

// memberAPIs are the https bases of members this node may ask: the join
// list, then members known from the node table and gossip.
func (c *Cluster) memberAPIs() []string {
	out := append([]string{}, c.cfg.Join...)
	if c.gossip != nil {
		for _, m := range c.gossip.snapshot() {
			if m.alive && m.ID != c.cfg.NodeID && m.API != "" {
				out = append(out, "https://"+m.API)
			}
		}
	}
	return out
}

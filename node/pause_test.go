package node

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/internal/freeport"
	"github.com/quorumca/quorumca/internal/testwait"
)

// pauseProxy stands in front of a node's API as the address other nodes
// forward to. While paused it takes bytes and passes none on, as a stopped
// process (SIGSTOP) does with its kernel's socket buffers.
type pauseProxy struct {
	ln     net.Listener
	target string
	gate   sync.RWMutex // held for writing while paused
	paused atomic.Bool
}

func newPauseProxy(t *testing.T, target string) *pauseProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pauseProxy{ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		if p.paused.Load() {
			p.resume() // let relays blocked on the gate end
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.conn(c)
		}
	}()
	return p
}

func (p *pauseProxy) pause()       { p.gate.Lock(); p.paused.Store(true) }
func (p *pauseProxy) resume()      { p.paused.Store(false); p.gate.Unlock() }
func (p *pauseProxy) addr() string { return p.ln.Addr().String() }

func (p *pauseProxy) conn(c net.Conn) {
	defer c.Close()
	p.gate.RLock()
	//lint:ignore SA2001 waits out a pause: pause holds the write lock
	p.gate.RUnlock()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(up, c) })
	wg.Go(func() { p.pipe(c, up) })
	wg.Wait()
}

func (p *pauseProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.gate.RLock()
			//lint:ignore SA2001 waits out a pause: pause holds the write lock
			p.gate.RUnlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err == io.EOF {
			dst.(*net.TCPConn).CloseWrite()
			return
		}
		if err != nil {
			// Unblock the other direction's read.
			src.Close()
			dst.Close()
			return
		}
	}
}

// A request in flight on a follower while the leader is paused gets 503
// with Retry-After and a JSON error, not 500; sent again once the leader
// runs, the same enrollment (token and key) gets one certificate.
func TestRequestWhileLeaderPausedIsUnavailable(t *testing.T) {
	var proxy *pauseProxy
	c := newTestClusterWith(t, 2, cluster.FastTiming(), func(c *testCluster) {
		c.configure = func(cfg *Config) {
			cfg.HoldTimeout = time.Second
			if cfg.Bootstrap {
				// Other nodes forward to n1 through the proxy.
				cfg.APIListen = freeport.For(t)
				proxy = newPauseProxy(t, cfg.APIListen)
				cfg.APIAdvertise = proxy.addr()
			}
		}
	})
	leader, follower := c.nodes[0], c.nodes[1]
	testwait.For(t, 10*time.Second, "n1 leads", leader.node.Cluster().IsLeader)
	token := c.mintToken(leader, "1h", "paused.example")
	c.WaitConverged()
	k := newKey(t)
	body := map[string]string{"csr": string(newCSR(t, k, "paused.example")), "token": token}

	proxy.pause()
	r := c.do(follower, "POST", "/v1/sign", body, "")
	proxy.resume()
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" ||
		r.header.Get("Content-Type") != "application/json" || r.errorCode() == "" {
		t.Fatalf("sign while the leader is paused: %d (Retry-After %q) %s, want 503 with Retry-After and a JSON error",
			r.status, r.header.Get("Retry-After"), r.body)
	}

	// The paused write may have been committed after all: a retry of the
	// same enrollment gets the certificate, and a second retry the same one.
	var first, again signed
	testwait.For(t, 10*time.Second, "the retried enrollment", func() bool {
		r = c.do(follower, "POST", "/v1/sign", body, "")
		return r.status == http.StatusCreated
	})
	r.decode(t, &first)
	r = c.do(follower, "POST", "/v1/sign", body, "")
	if r.status != http.StatusCreated {
		t.Fatalf("second retry: %d %s", r.status, r.body)
	}
	r.decode(t, &again)
	if first.Serial != again.Serial {
		t.Fatalf("retries of one enrollment got serials %s and %s", first.Serial, again.Serial)
	}
}

package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A forwarded write must not wait forever on a member that went silent
// (killed with no reset, paused, cut off by a partition): the internal RPC
// transport finds the connection dead and fails the call, which callLeader
// retries with whichever node leads by then.
func TestRPCTransportGivesUpOnSilentPeer(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		io.WriteString(w, "ok")
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	t.Run("established connection goes silent", func(t *testing.T) {
		proxy := newSilenceProxy(t, srv.Listener.Addr().String())
		tr := newRPCHTTPTransport(&tls.Config{RootCAs: pool}, nil)
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		resp, err := c.Get("https://" + proxy.addr + "/ok")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("internal RPC should use HTTP/2, got %s", resp.Proto)
		}
		proxy.silence()
		requireGivesUp(t, c, "https://"+proxy.addr+"/slow")
	})

	t.Run("peer accepts but never answers the handshake", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var conns []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, conn) // held open, never read
				mu.Unlock()
			}
		}()
		defer func() {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		}()
		tr := newRPCHTTPTransport(&tls.Config{RootCAs: pool}, nil)
		defer tr.CloseIdleConnections()
		requireGivesUp(t, &http.Client{Transport: tr}, "https://"+l.Addr().String()+"/ok")
	})
}

func requireGivesUp(t *testing.T, c *http.Client, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, nil)
	start := time.Now()
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("a request to a silent peer succeeded")
	}
	if ctx.Err() != nil || time.Since(start) > 8*time.Second {
		t.Fatalf("a request to a silent peer took %s to fail (%v)", time.Since(start).Round(time.Millisecond), err)
	}
}

// silenceProxy relays TCP to a server until silence is called; from then
// on it keeps every connection open and passes nothing, as a killed or
// paused host would.
type silenceProxy struct {
	addr   string
	silent atomic.Bool
}

func newSilenceProxy(t *testing.T, target string) *silenceProxy {
	p := &silenceProxy{}
	p.addr = listenTracked(t, func(in net.Conn) []net.Conn {
		out, err := net.Dial("tcp", target)
		if err != nil {
			in.Close()
			return nil
		}
		go p.pipe(in, out)
		go p.pipe(out, in)
		return []net.Conn{in, out}
	})
	return p
}

// listenTracked accepts TCP connections on a local port and hands each to
// handle, which returns the connections to close when the test ends.
func listenTracked(t *testing.T, handle func(in net.Conn) []net.Conn) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			cs := handle(in)
			mu.Lock()
			conns = append(conns, cs...)
			mu.Unlock()
		}
	}()
	return l.Addr().String()
}

func (p *silenceProxy) silence() { p.silent.Store(true) }

func (p *silenceProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if p.silent.Load() {
			continue // swallowed
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

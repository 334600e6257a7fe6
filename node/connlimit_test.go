package node

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/internal/testwait"
)

// Each client address (the device's, behind a balancer that sends PROXY
// headers) may hold max_connections_per_client connections, of which
// max_idle_connections_per_client idle: beyond, the longest idle is closed,
// and a new connection takes the place of an idle one or, with none idle,
// is closed at once.
func TestConnectionCapsPerClient(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.proxyFrom = []string{"127.0.0.2/32"} // the balancer
		c.configure = func(cfg *Config) { cfg.MaxConnsPerClient, cfg.MaxIdleConnsPerClient = 3, 2 }
	})
	n := c.nodes[0]
	roots := x509.NewCertPool()
	roots.AddCert(c.pki.Root())
	// dial connects through the balancer on behalf of a device.
	dial := func(device string) (*tls.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", n.node.APIAddr())
		if err != nil {
			return nil, err
		}
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(device), Port: 4444}, conn.RemoteAddr())
		if _, err := h.WriteTo(conn); err != nil {
			conn.Close()
			return nil, err
		}
		tc := tls.Client(conn, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, err
		}
		t.Cleanup(func() { tc.Close() })
		return tc, nil
	}
	// get sends a keep-alive request on a connection and reads the reply,
	// leaving the connection idle.
	get := func(tc *tls.Conn, br *bufio.Reader) (int, error) {
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		req, _ := http.NewRequest("GET", "https://"+n.node.APIAddr()+"/v1/health", nil)
		if err := req.Write(tc); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, err
	}

	var conns []*tls.Conn
	for i := range 3 {
		tc, err := dial("203.0.113.7")
		if err != nil {
			t.Fatalf("connection %d of 3: %v", i+1, err)
		}
		conns = append(conns, tc)
	}
	if _, err := dial("203.0.113.7"); err == nil {
		t.Error("a 4th connection from one device was accepted")
	}
	other, err := dial("203.0.113.8")
	if err != nil {
		t.Fatalf("another device behind the same balancer was refused: %v", err)
	}
	other.Close()
	if got := c.metric(n, "quorumca_listener_connections_refused_total", map[string]string{"listener": "api"}); got != 1 {
		t.Errorf("refusals counted: %v", got)
	}

	// Three connections fall idle: the longest idle is closed once it has
	// been idle a while (not at once: a client in a burst reuses its
	// connections within milliseconds), the other two still serve.
	live := map[*tls.Conn]*bufio.Reader{}
	for i, tc := range conns {
		live[tc] = bufio.NewReader(tc)
		if st, err := get(tc, live[tc]); err != nil || st != http.StatusOK {
			t.Fatalf("request on connection %d: %d %v", i+1, st, err)
		}
	}
	culled := func() float64 {
		return c.metric(n, "quorumca_listener_idle_connections_closed_total", map[string]string{"listener": "api"})
	}
	// oneClosed checks that exactly one connection was closed and the others
	// serve, and forgets the closed one.
	oneClosed := func(what string) {
		t.Helper()
		var gone []*tls.Conn
		for tc, br := range live {
			if st, err := get(tc, br); err != nil || st != http.StatusOK {
				gone = append(gone, tc)
			}
		}
		if len(gone) != 1 {
			t.Fatalf("%s: %d of %d connections closed, want 1", what, len(gone), len(live))
		}
		delete(live, gone[0])
	}
	testwait.For(t, 4*idleGrace, "the longest idle connection to be closed", func() bool { return culled() == 1 })
	oneClosed("after the idle cull")
	// The closed connection no longer counts: the device may open another.
	// One more takes the place of the longest idle.
	if _, err := dial("203.0.113.7"); err != nil {
		t.Fatalf("a new connection in the freed place: %v", err)
	}
	testwait.For(t, 10*time.Second, "the two connections to be idle", func() bool {
		return n.node.apiConns.idleOf("203.0.113.7") == 2
	})
	if _, err := dial("203.0.113.7"); err != nil {
		t.Fatalf("a new connection in place of an idle one: %v", err)
	}
	oneClosed("after a new connection took an idle one's place")
	if got := culled(); got != 2 {
		t.Errorf("idle connections closed: %v, want 2", got)
	}
}

func TestConnectionCapConfig(t *testing.T) {
	base := `
node_name = "n1"
data_dir  = "/tmp/n1"
allow_insecure_soft_signer = true
raft { listen = "127.0.0.1:8301" }
cluster {
  bootstrap = true
  join_secret = "0123456789abcdef0123"
  ca_key = "softkey:/tmp/ca.key"
  ca_file = "/tmp/ca.pem"
}
`
	for _, tt := range []struct {
		api     string
		conns   int
		idle    int
		wantErr string
	}{
		{`api { 
  listen = "127.0.0.1:8443" 
  tls_cert_file = "c" 
  tls_key_file = "k" 
}`, 0, 0, ""},
		{`api { 
  listen = "127.0.0.1:8443" 
  tls_cert_file = "c" 
  tls_key_file = "k" 
  max_connections_per_client = 100
  max_idle_connections_per_client = 10
}`, 100, 10, ""},
		{`api { 
  listen = "127.0.0.1:8443" 
  tls_cert_file = "c" 
  tls_key_file = "k" 
  max_connections_per_client = 10
  max_idle_connections_per_client = 20
}`, 0, 0, "must not exceed"},
		{`api { 
  listen = "127.0.0.1:8443" 
  tls_cert_file = "c" 
  tls_key_file = "k" 
  max_connections_per_client = -1
}`, 0, 0, "must not be negative"},
	} {
		cfg, err := Parse("node.hcl", []byte(base+tt.api))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: %v, want %q", tt.api, err, tt.wantErr)
			}
			continue
		}
		if err != nil || cfg.MaxConnsPerClient != tt.conns || cfg.MaxIdleConnsPerClient != tt.idle {
			t.Errorf("%s: %+v %v", tt.api, cfg, err)
		}
	}
}

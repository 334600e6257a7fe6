package node

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

func metricValue(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f, ok := families[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		for k, v := range labels {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// /v1/metrics parses as Prometheus text and its counters match the work done.
func TestMetricsMatchTheWork(t *testing.T) {
	c := newTestCluster(t, 3)
	n := c.Leader()
	var holders []*holder
	for _, name := range []string{"m1.example", "m2.example", "m3.example"} {
		holders = append(holders, c.enrollHolder(n, name))
	}
	used := c.mintToken(n, "1h", "m1.example")
	c.sign(n, used, newCSR(t, newKey(t), "m1.example"))
	c.do(n, "POST", "/v1/sign", map[string]string{"csr": string(newCSR(t, newKey(t), "m1.example")), "token": used}, "")
	if r := c.mtls(holders[0], n, "POST", "/v1/renew", nil, ""); r.status != http.StatusCreated {
		t.Fatal(r.status)
	}
	c.do(n, "POST", "/v1/revoke", map[string]string{"serial": holders[1].s.Serial}, c.admin)
	c.crlListing(n, holders[1].chain[0], holders[1].cert.SerialNumber) // the leader's CRL signature
	testwait.For(t, 10*time.Second, "the leader writes log format 1", func() bool {
		f := n.node.Cluster().Status().LogFormat
		return f != nil && *f == fsm.LogFormat
	})

	r := c.do(n, "GET", "/v1/metrics", nil, "")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("metrics do not parse as Prometheus text: %v", err)
	}
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"quorumca_operations_total", map[string]string{"operation": "issue", "outcome": "ok"}, 4},
		{"quorumca_operations_total", map[string]string{"operation": "issue", "outcome": "token_used"}, 1},
		{"quorumca_operations_total", map[string]string{"operation": "renew", "outcome": "ok"}, 1},
		{"quorumca_operations_total", map[string]string{"operation": "revoke", "outcome": "ok"}, 1},
		{"quorumca_operations_total", map[string]string{"operation": "token_mint", "outcome": "ok"}, 4},
		{"quorumca_operation_duration_seconds", map[string]string{"operation": "issue", "outcome": "ok"}, 4},
		{"quorumca_raft_state", nil, 2},
		{"quorumca_raft_voters", nil, 3},
		{"quorumca_raft_log_format", nil, fsm.LogFormat},
	} {
		if got := metricValue(t, families, tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	// 4 issuances and a renewal signed here; a revocation signed a CRL.
	if got := metricValue(t, families, "quorumca_signer_duration_seconds", map[string]string{"backend": "softkey", "outcome": "ok"}); got < 6 {
		t.Errorf("signatures observed: %v, want at least 6", got)
	}
	if got := metricValue(t, families, "quorumca_raft_apply_duration_seconds", map[string]string{"command": "issue", "outcome": "ok"}); got != 4 {
		t.Errorf("issue entries applied by the leader: %v, want 4", got)
	}
	if got := metricValue(t, families, "quorumca_raft_apply_duration_seconds", map[string]string{"command": "renew", "outcome": "ok"}); got != 1 {
		t.Errorf("renew entries applied by the leader: %v, want 1", got)
	}
	if metricValue(t, families, "quorumca_fsm_size_bytes", nil) <= 0 || metricValue(t, families, "quorumca_audit_entries", nil) <= 0 {
		t.Error("state size or audit gauge missing")
	}
}

// Behind a balancer that sends the PROXY protocol, the node records the
// device's address; a header from anyone else is not believed.
func TestProxyProtocolFromBalancersOnly(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.proxyFrom = []string{"127.0.0.2/32"} // the "balancer"
	})
	n := c.nodes[0]
	roots := x509.NewCertPool()
	roots.AddCert(c.pki.Root())
	send := func(from string, header bool) (int, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", n.node.APIAddr())
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		if header {
			h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 4444}, conn.RemoteAddr())
			if _, err := h.WriteTo(conn); err != nil {
				return 0, err
			}
		}
		tc := tls.Client(conn, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		req, _ := http.NewRequest("POST", "https://"+n.node.APIAddr()+"/v1/admin/tokens", strings.NewReader(`{"sans": ["p.example"]}`))
		req.Header.Set("Authorization", "Bearer "+c.admin)
		req.Close = true // the server closes after replying: read to the end
		if err := req.Write(tc); err != nil {
			return 0, err
		}
		b, err := io.ReadAll(tc)
		if err != nil && len(b) == 0 {
			return 0, err
		}
		if i := bytes.Index(b, []byte(" ")); i > 0 && len(b) > i+4 {
			return int(b[i+1]-'0')*100 + int(b[i+2]-'0')*10 + int(b[i+3]-'0'), nil
		}
		return 0, io.ErrUnexpectedEOF
	}
	if st, err := send("127.0.0.2", true); err != nil || st != http.StatusCreated {
		t.Fatalf("through the balancer: %d %v", st, err)
	}
	page, _ := n.node.FSM().Audit(fsmAuditAll("token_create"))
	entries := page.Entries
	if len(entries) != 1 || entries[0].Remote != "203.0.113.7" {
		t.Fatalf("audit remote: %+v", entries)
	}
	if st, err := send("127.0.0.1", false); err != nil || st != http.StatusCreated {
		t.Errorf("direct, no header: %d %v", st, err)
	}
	if st, err := send("127.0.0.1", true); err == nil && st != 0 {
		t.Errorf("a PROXY header from a non-balancer was accepted: %d", st)
	}
}

// pprof is served on the admin listener only; profiles go to Pyroscope.
func TestAdminListenerAndProfiling(t *testing.T) {
	var uploads atomic.Int64
	pyro := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		uploads.Add(1)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go pyro.Serve(ln)
	defer pyro.Close()
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.adminListen = true
		c.pyroscope = &PyroscopeConfig{ServerAddress: "http://" + ln.Addr().String(), UploadRate: time.Second}
	})
	n := c.nodes[0]
	resp, err := http.Get("http://" + n.node.AdminAddr() + "/debug/pprof/goroutine?debug=1")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pprof on the admin listener: %v %v", err, resp)
	}
	resp.Body.Close()
	if r := c.do(n, "GET", "/debug/pprof/goroutine", nil, ""); r.status != http.StatusNotFound {
		t.Errorf("pprof on the API: %d", r.status)
	}
	testwait.For(t, 20*time.Second, "a profile upload", func() bool { return uploads.Load() > 0 })
}

func fsmAuditAll(command string) fsm.AuditFilter {
	return fsm.AuditFilter{Command: command, Limit: 1000}
}

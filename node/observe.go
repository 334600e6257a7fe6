package node

import (
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/grafana/pyroscope-go"
	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumca/quorumca/api"
)

// registerMetrics adds the node-level gauges: Raft state, FSM size, CA
// certificate and CRL lifetimes (expiry.go), and signer timings (through
// the signer cache's observer).
func (n *Node) registerMetrics(reg *prometheus.Registry) {
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	states := map[string]float64{"Follower": 0, "Candidate": 1, "Leader": 2, "Shutdown": 3}
	gauge("quorumca_raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shutdown.",
		func() float64 { return states[n.cluster.Status().State] })
	gauge("quorumca_raft_term", "Current Raft term.", func() float64 { return float64(n.cluster.Status().Term) })
	gauge("quorumca_raft_log_format", "On the leader, the log format it writes (0 while a server reads only format 0); -1 elsewhere.",
		func() float64 {
			if f := n.cluster.Status().LogFormat; f != nil {
				return float64(*f)
			}
			return -1
		})
	gauge("quorumca_raft_commit_index", "Raft commit index as this node knows it.",
		func() float64 { return float64(n.cluster.Status().CommitIndex) })
	gauge("quorumca_raft_applied_index", "Last log index applied to this node's state.",
		func() float64 { return float64(n.fsm.AppliedIndex()) })
	gauge("quorumca_raft_last_contact_seconds", "Seconds since a follower last heard from the leader.",
		func() float64 { return n.cluster.Status().LastContact })
	gauge("quorumca_raft_voters", "Voters in the Raft configuration.", func() float64 { return float64(n.cluster.Status().Voters) })
	gauge("quorumca_raft_nonvoters", "Non-voters in the Raft configuration.", func() float64 { return float64(n.cluster.Status().NonVoters) })
	gauge("quorumca_fsm_size_bytes", "Size of the state database file.", func() float64 {
		st, err := os.Stat(n.fsm.Path())
		if err != nil {
			return 0
		}
		return float64(st.Size())
	})
	gauge("quorumca_ocsp_store_size_bytes", "Size of this node's file of signed OCSP answers.", func() float64 {
		st, err := os.Stat(n.ocsp.Path())
		if err != nil {
			return 0
		}
		return float64(st.Size())
	})
	gauge("quorumca_gossip_members", "Live gossip members, this node included.", func() float64 { return float64(n.cluster.GossipMembers()) })
	gauge("quorumca_audit_entries", "Entries in the audit log.", func() float64 { s, _ := n.fsm.AuditHead(); return float64(s) })
	reg.MustRegister(newExpiryCollector(n.fsm, n.cfg.Now))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "quorumca_audit_reads_total",
		Help: "Audit entries and index keys read by audit queries and follows: what they cost."},
		func() float64 { return float64(n.fsm.AuditReads()) }))

	signs := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "quorumca_signer_duration_seconds",
		Help:    "Time of each signature by the key backend, by backend and outcome.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
	}, []string{"backend", "outcome"})
	reg.MustRegister(signs)
	n.signers.SetObserve(func(scheme string, d time.Duration, err error) {
		outcome := "ok"
		if err != nil {
			outcome = "error"
		}
		signs.WithLabelValues(scheme, outcome).Observe(d.Seconds())
	})
}

// adminServer serves pprof and metrics on the admin listener, which should
// be reachable only from the host or a management network. The metrics
// token, if any, is required here as on the API.
func (n *Node) adminServer(reg *prometheus.Registry, metricsToken string) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/v1/metrics", api.MetricsHandler(reg, metricsToken, n.refused))
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: n.http.ErrorLog}
}

// startProfiling sends continuous profiles to a Pyroscope server.
func (n *Node) startProfiling() error {
	p := n.cfg.Pyroscope
	if p == nil || p.ServerAddress == "" {
		return nil
	}
	name := p.ApplicationName
	if name == "" {
		name = "quorumca"
	}
	prof, err := pyroscope.Start(pyroscope.Config{ApplicationName: name, ServerAddress: p.ServerAddress,
		UploadRate: p.UploadRate, Tags: map[string]string{"node": n.cfg.NodeName}})
	if err != nil {
		return err
	}
	n.profiler = prof
	n.log.Info("continuous profiling on", "server", p.ServerAddress)
	return nil
}

// proxyListener accepts a PROXY protocol (v1 or v2) header from the given
// balancer ranges only, so the node sees devices' own addresses. Anyone
// else's connection is taken as it is (a header from them is not trusted).
func proxyListener(l net.Listener, from []string) (net.Listener, error) {
	if len(from) == 0 {
		return l, nil
	}
	var nets []*net.IPNet
	for _, c := range from {
		_, ipn, err := net.ParseCIDR(c)
		if err != nil {
			return nil, err
		}
		nets = append(nets, ipn)
	}
	return &proxyproto.Listener{Listener: l, ReadHeaderTimeout: 5 * time.Second,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if tcp, ok := o.Upstream.(*net.TCPAddr); ok {
				for _, ipn := range nets {
					if ipn.Contains(tcp.IP) {
						return proxyproto.USE, nil
					}
				}
			}
			return proxyproto.SKIP, nil // left in the stream: TLS then fails
		}}, nil
}

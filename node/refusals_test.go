package node

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"github.com/quorumca/quorumca/internal/testwait"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/quorumca/quorumca/cluster"
)

// auditRefusals reads the refusal lines of an audit file: sampled lines,
// and the summaries of those left out.
func auditRefusals(t *testing.T, path string) (lines []map[string]any, suppressed int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil || m["refused"] != true {
			continue
		}
		if n, ok := m["suppressed"].(float64); ok {
			suppressed += int(n)
			continue
		}
		lines = append(lines, m)
	}
	return lines, suppressed
}

// A flood of reads that miss (unknown serials, forged tokens) through a
// follower writes a bounded number of audit-file lines, accounts for every
// refusal in summaries, and shares read-index rounds instead of asking the
// leader once per miss.
func TestRefusalFloodIsSampled(t *testing.T) {
	c := newTestClusterWith(t, 3, cluster.FastTiming(), func(c *testCluster) { c.auditFiles = true })
	n := c.Followers()[0]
	asked := map[string]string{"side": "asked"}
	roundsBefore := c.nodeMetric(n, "quorumca_read_index_rounds_total", asked)
	forged := map[string]string{"csr": "x", "token": "qcet_" + strings.Repeat("A", 43)}
	const misses, workers = 10000, 32
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := next.Add(1); i <= misses; i = next.Add(1) {
				var r reply
				var err error
				if i%2 == 0 {
					b := make([]byte, 16)
					rand.Read(b)
					r, err = c.try(n, "GET", "/v1/certs/"+hex.EncodeToString(b), nil, "")
				} else {
					r, err = c.try(n, "POST", "/v1/sign", forged, "")
				}
				if err != nil || (r.status != http.StatusNotFound && r.status != http.StatusUnauthorized) {
					t.Errorf("miss %d: %v %d %s", i, err, r.status, r.body)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if t.Failed() {
		t.FailNow()
	}
	rounds := int(c.nodeMetric(n, "quorumca_read_index_rounds_total", asked) - roundsBefore)
	c.Stop(n) // writes the last summary
	lines, suppressed := auditRefusals(t, n.cfg.AuditFile)
	// Two codes from one address: a burst and then one a second each,
	// plus a summary every interval.
	bound := 2*(refusalBurst+int(refusalRate*elapsed.Seconds())+1) + int(elapsed/refusalSummaryEvery) + 2
	t.Logf("%d misses in %s: %d audit lines, %d suppressed, %d read-index rounds", misses, elapsed.Round(time.Millisecond), len(lines), suppressed, rounds)
	if len(lines) > bound {
		t.Fatalf("%d misses wrote %d refusal lines to the audit file, want at most %d", misses, len(lines), bound)
	}
	if len(lines)+suppressed != misses {
		t.Fatalf("%d lines and %d suppressed: %d refusals unaccounted for", len(lines), suppressed, misses-len(lines)-suppressed)
	}
	if rounds > misses/4 {
		t.Fatalf("%d misses cost %d read-index rounds", misses, rounds)
	}
}

// nodeMetric reads one metric from a node's /v1/metrics.
func (c *testCluster) nodeMetric(tn *testNode, name string, labels map[string]string) float64 {
	c.t.Helper()
	r := c.do(tn, "GET", "/v1/metrics", nil, "")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		c.t.Fatal(err)
	}
	return metricValue(c.t, families, name, labels)
}

// A refused request's path and message reach the log and the audit file
// bounded in length and without control characters, however the client
// spelt them.
func TestRefusedPathsAreTruncatedAndEscaped(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) { c.auditFiles = true })
	var logs testwait.Buffer
	n := c.addNodeWith(func(cfg *Config) { cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	c.WaitConverged()
	odd := "/v1/certs/" + strings.Repeat("f", 5000) + "%0Aforged%20line%1B%5B31m%E2%80%AEevil"
	r := c.do(n, "GET", odd, nil, "")
	if r.status != http.StatusBadRequest {
		t.Fatalf("odd path: %d %s", r.status, r.body)
	}
	r = c.do(n, "GET", "/v1/authorities/"+strings.Repeat("x", 3000)+"%0A%00%7F/roots", nil, "")
	if r.status != http.StatusNotFound {
		t.Fatalf("odd authority: %d %s", r.status, r.body)
	}
	c.Stop(n)
	check := func(where string, m map[string]any) {
		for _, field := range []string{"path", "message", "method"} {
			s, _ := m[field].(string)
			if len(s) > 300 && field == "path" || len(s) > 600 {
				t.Errorf("%s: %s of %d bytes: %.80q...", where, field, len(s), s)
			}
			for _, r := range s {
				if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
					t.Errorf("%s: %s holds control character %U: %.120q", where, field, r, s)
					break
				}
			}
		}
	}
	lines, _ := auditRefusals(t, n.cfg.AuditFile)
	if len(lines) != 2 {
		t.Fatalf("%d refusal lines in the audit file, want 2", len(lines))
	}
	for _, l := range lines {
		check("audit file", l)
	}
	logged := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "request refused" {
			logged++
			check("log", m)
		}
	}
	if logged != 2 {
		t.Fatalf("%d refusals logged, want 2", logged)
	}
}

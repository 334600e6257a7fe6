//go:build !agent

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/internal/testwait"
)

// The bench commands against a dev CA: results carry the fields scripts
// read, every device enrolls and renews, and the storm's verdict follows
// from its figures.
func TestBenchCommands(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	base := freeBase(t, 1)
	addr := fmt.Sprintf("https://127.0.0.1:%d", base)
	p := start(t, "dev", "-data-dir", dir, "-listen", fmt.Sprintf("127.0.0.1:%d", base))
	testwait.For(t, 60*time.Second, "the dev banner", func() bool { return strings.Contains(p.out.String(), "Press Ctrl-C") })
	common := []string{"-addr", addr, "-ca-file", filepath.Join(dir, "root.pem"), "-admin-token-file", filepath.Join(dir, "admin.token"), "-quiet"}

	bench := func(args ...string) (string, int) {
		t.Helper()
		b, err := exec.Command(binary, append([]string{"bench"}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		if err == nil {
			return string(b), 0
		} else if !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return string(b), ee.ExitCode()
	}
	type result struct {
		Kind           string    `json:"kind"`
		Operation      string    `json:"operation"`
		CertsPerSecond float64   `json:"certs_per_second"`
		P50ms          float64   `json:"p50_ms"`
		P99ms          float64   `json:"p99_ms"`
		Errors         *int      `json:"errors"`
		Requests       int       `json:"requests"`
		Handshakes     float64   `json:"tls_handshakes_per_second"`
		Ceiling        float64   `json:"ceiling_per_second"`
		KeptUp         *bool     `json:"kept_up"`
		Phases         []*result `json:"phases"`
	}
	read := func(name string) *result {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		var r result
		if err := json.Unmarshal(b, &r); err != nil || r.Errors == nil {
			t.Fatalf("%s: %v\n%s", name, err, b)
		}
		return &r
	}

	if o, code := bench("ceiling", "-duration", "1s", "-json", filepath.Join(out, "ceiling.json")); code != 0 {
		t.Fatalf("ceiling: exit %d\n%s", code, o)
	}
	c := read("ceiling.json")
	if c.Kind != "ceiling" || c.CertsPerSecond <= 0 || c.P50ms <= 0 || c.P99ms < c.P50ms {
		t.Errorf("ceiling result: %+v", c)
	}

	const devices = 300
	args := append(common, "-duration", "30s", "-concurrency", "4", "-devices", fmt.Sprint(devices), "-renew",
		"-json", filepath.Join(out, "run.json"), "-plot", filepath.Join(out, "run.svg"), "-ceiling", filepath.Join(out, "ceiling.json"))
	if o, code := bench(append([]string{"run"}, args...)...); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, o)
	}
	r := read("run.json")
	if r.Operation != "renew" || r.Requests != devices || *r.Errors != 0 || r.CertsPerSecond <= 0 || r.P99ms < r.P50ms {
		t.Errorf("renew result: %+v", r)
	}
	if len(r.Phases) != 1 || r.Phases[0].Operation != "enroll" || r.Phases[0].Requests != devices || *r.Phases[0].Errors != 0 {
		t.Errorf("enroll phase: %+v", r.Phases)
	}
	if r.Handshakes <= 0 || r.Ceiling != c.CertsPerSecond {
		t.Errorf("handshake rate %v, ceiling %v (want %v)", r.Handshakes, r.Ceiling, c.CertsPerSecond)
	}
	if svg, err := os.ReadFile(filepath.Join(out, "run.svg")); err != nil || !strings.HasPrefix(string(svg), "<svg") {
		t.Errorf("plot: %v %.40q", err, svg)
	}

	o, code := bench(append([]string{"storm"}, append(common, "-devices", "200", "-window", "2s", "-json", filepath.Join(out, "storm.json"))...)...)
	s := read("storm.json")
	if s.Kind != "storm" || s.Requests != 200 || s.KeptUp == nil {
		t.Fatalf("storm result: %+v\n%s", s, o)
	}
	if want := *s.Errors == 0 && s.P99ms < 1000; *s.KeptUp != want || (code == 0) != want {
		t.Errorf("storm: kept_up %v, exit %d, errors %d, p99 %.1f ms", *s.KeptUp, code, *s.Errors, s.P99ms)
	}

	o, code = bench("compare", filepath.Join(out, "ceiling.json"), filepath.Join(out, "run.json"))
	if code != 0 || !strings.Contains(o, "certs_per_second") {
		t.Errorf("compare: exit %d\n%s", code, o)
	}
	if _, code := bench("compare", filepath.Join(out, "missing.json"), filepath.Join(out, "run.json")); code == 0 {
		t.Error("compare of a missing file succeeded")
	}
	p.stop(t)
}

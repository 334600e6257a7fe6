// Package bench is the load-test harness behind `quorumca bench`: the
// ceiling reference, fleet runs (open and closed loop, enroll and renew),
// renewal storms, and comparisons of their JSON results. See DESIGN.md.
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Result is what a run writes as JSON. Scripts rely on certs_per_second,
// p50_ms, p99_ms and errors.
type Result struct {
	Kind           string  `json:"kind"` // ceiling, run, storm
	Operation      string  `json:"operation,omitempty"`
	CertsPerSecond float64 `json:"certs_per_second"`
	P50ms          float64 `json:"p50_ms"`
	P90ms          float64 `json:"p90_ms"`
	P99ms          float64 `json:"p99_ms"`
	P999ms         float64 `json:"p999_ms"`
	MaxMs          float64 `json:"max_ms"`
	Requests       int     `json:"requests"`
	Errors         int     `json:"errors"`
	// ErrorsByCode counts failures by the API's error code, or by a short
	// transport reason (timeout, refused, reset, tls).
	ErrorsByCode map[string]int `json:"errors_by_code,omitempty"`
	Seconds      float64        `json:"seconds"`
	Series       []Second       `json:"series,omitempty"`

	// Run settings.
	Addr        string  `json:"addr,omitempty"`
	Mode        string  `json:"mode,omitempty"` // closed or open
	Concurrency int     `json:"concurrency,omitempty"`
	TargetRate  float64 `json:"target_rate,omitempty"`
	Devices     int     `json:"devices,omitempty"`
	NewConn     bool    `json:"new_connection_per_request,omitempty"`
	KeyType     string  `json:"key_type,omitempty"`

	// Extra figures: enrollment phase of a renew run, the TLS handshake
	// rate next to renewals, a storm's verdict.
	Phases        []*Result `json:"phases,omitempty"`
	HandshakesPS  float64   `json:"tls_handshakes_per_second,omitempty"`
	Window        float64   `json:"window_seconds,omitempty"`
	KeptUp        *bool     `json:"kept_up,omitempty"`
	MaxLagMs      float64   `json:"max_lag_ms,omitempty"`
	Note          string    `json:"note,omitempty"`
	Machine       Machine   `json:"machine"`
	Started       time.Time `json:"started"`
	CeilingPerSec float64   `json:"ceiling_per_second,omitempty"` // the ceiling measured in the same session, if given

	// bench peers: the CA, its version and settings. CPU per certificate
	// over the measured phase, in milliseconds: the CA process's (with
	// Config.CAPid) and the harness's own.
	CA           string  `json:"ca,omitempty"`
	CACPUms      float64 `json:"ca_cpu_ms_per_cert,omitempty"`
	HarnessCPUms float64 `json:"harness_cpu_ms_per_cert,omitempty"`
}

// Second is one second of a run.
type Second struct {
	T      int     `json:"t"`
	Rate   float64 `json:"rate"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	Errors int     `json:"errors"`
}

// Machine says where a figure came from.
type Machine struct {
	CPUs    int    `json:"cpus"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Model   string `json:"cpu_model,omitempty"`
	MemoryG int    `json:"memory_gib,omitempty"`
}

func thisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryG = (kb + 1<<19) >> 20
		}
	}
	return m
}

// WriteJSON writes r to path.
func (r *Result) WriteJSON(path string) error { return writeJSON(path, r) }

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadResult reads a JSON result.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// Summary is a few lines for people.
func (r *Result) Summary(w io.Writer) {
	fmt.Fprintf(w, "%s", r.Kind)
	if r.CA != "" {
		fmt.Fprintf(w, " %s:", r.CA)
	}
	if r.Operation != "" {
		fmt.Fprintf(w, " %s", r.Operation)
	}
	if r.Mode != "" {
		fmt.Fprintf(w, " (%s loop", r.Mode)
		if r.Mode == "open" {
			fmt.Fprintf(w, ", target %.0f/s", r.TargetRate)
		} else {
			fmt.Fprintf(w, ", %d workers", r.Concurrency)
		}
		if r.NewConn {
			fmt.Fprint(w, ", new TLS connection per request")
		}
		fmt.Fprint(w, ")")
	}
	unit := "certificates/s" // certs_per_second counts answers of an OCSP run
	if strings.HasPrefix(r.Operation, "ocsp") {
		unit = "OCSP answers/s"
	}
	fmt.Fprintf(w, ": %.0f %s over %.1fs, %d requests, %d errors\n", r.CertsPerSecond, unit, r.Seconds, r.Requests, r.Errors)
	if r.Requests > 0 && r.Kind != "ceiling" {
		fmt.Fprintf(w, "  latency ms: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n", r.P50ms, r.P90ms, r.P99ms, r.P999ms, r.MaxMs)
	}
	if len(r.ErrorsByCode) > 0 {
		codes := make([]string, 0, len(r.ErrorsByCode))
		for c := range r.ErrorsByCode {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		fmt.Fprint(w, "  errors:")
		for _, c := range codes {
			fmt.Fprintf(w, " %s=%d", c, r.ErrorsByCode[c])
		}
		fmt.Fprintln(w)
	}
	if r.CACPUms > 0 {
		fmt.Fprintf(w, "  CPU per certificate: CA process %.3f ms, harness %.3f ms\n", r.CACPUms, r.HarnessCPUms)
	}
	if r.HandshakesPS > 0 {
		fmt.Fprintf(w, "  raw TLS handshakes (same client, same run): %.0f/s\n", r.HandshakesPS)
	}
	if r.CeilingPerSec > 0 {
		fmt.Fprintf(w, "  %.0f%% of the ceiling (%.0f/s)\n", 100*r.CertsPerSecond/r.CeilingPerSec, r.CeilingPerSec)
	}
	if r.KeptUp != nil {
		verdict := "kept up"
		if !*r.KeptUp {
			verdict = "did NOT keep up"
		}
		fmt.Fprintf(w, "  storm: %d renewals spread over %.0fs: the cluster %s (largest lag %.0f ms)\n", r.Requests, r.Window, verdict, r.MaxLagMs)
	}
	if r.Note != "" {
		fmt.Fprintf(w, "  %s\n", r.Note)
	}
}

// recorder collects outcomes from many workers.
type recorder struct {
	start time.Time

	mu      sync.Mutex
	lat     []float32 // ms, successful requests
	errs    map[string]int
	seconds []bucket
	maxLag  time.Duration
}

type bucket struct {
	n, errs int
	lat     []float32
}

func newRecorder(start time.Time) *recorder {
	return &recorder{start: start, errs: map[string]int{}}
}

// add records one request scheduled at sched (or started, in a closed
// loop) and finished at done.
func (r *recorder) add(sched, done time.Time, errCode string) {
	ms := float32(done.Sub(sched).Seconds() * 1000)
	sec := int(done.Sub(r.start) / time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.seconds) <= sec {
		r.seconds = append(r.seconds, bucket{})
	}
	b := &r.seconds[sec]
	if errCode != "" {
		r.errs[errCode]++
		b.errs++
		return
	}
	r.lat = append(r.lat, ms)
	b.n++
	b.lat = append(b.lat, ms)
	r.maxLag = max(r.maxLag, done.Sub(sched))
}

// progress prints a line a second until stop closes.
func (r *recorder) progress(w io.Writer, label string, stop <-chan struct{}) {
	if w == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := 0
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			r.mu.Lock()
			n, errs := len(r.lat), 0
			for _, c := range r.errs {
				errs += c
			}
			p99 := percentile(slices.Clone(r.lat), 0.99)
			r.mu.Unlock()
			fmt.Fprintf(w, "%s %4ds  %7.0f certs/s  %8d done  %5d errors  p99 so far %.1f ms\n",
				label, int(now.Sub(r.start).Seconds()), float64(n-last), n, errs, p99)
			last = n
		}
	}
}

// result fills r's figures from what was recorded over elapsed.
func (r *recorder) result(res *Result, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat := slices.Clone(r.lat)
	slices.Sort(lat)
	res.Seconds = elapsed.Seconds()
	res.Requests = len(lat)
	for c, n := range r.errs {
		res.Errors += n
		res.Requests += n
		if res.ErrorsByCode == nil {
			res.ErrorsByCode = map[string]int{}
		}
		res.ErrorsByCode[c] = n
	}
	if elapsed > 0 {
		res.CertsPerSecond = float64(len(lat)) / elapsed.Seconds()
	}
	res.P50ms, res.P90ms, res.P99ms = SortedPercentile(lat, 0.5), SortedPercentile(lat, 0.9), SortedPercentile(lat, 0.99)
	res.P999ms = SortedPercentile(lat, 0.999)
	if len(lat) > 0 {
		res.MaxMs = float64(lat[len(lat)-1])
	}
	res.MaxLagMs = float64(r.maxLag) / float64(time.Millisecond)
	for i, b := range r.seconds {
		s := slices.Clone(b.lat)
		slices.Sort(s)
		res.Series = append(res.Series, Second{T: i + 1, Rate: float64(b.n), P50ms: SortedPercentile(s, 0.5), P99ms: SortedPercentile(s, 0.99), Errors: b.errs})
	}
}

func percentile(xs []float32, q float64) float64 {
	slices.Sort(xs)
	return SortedPercentile(xs, q)
}

// SortedPercentile is the q-quantile (nearest rank) of sorted xs; 0 if
// there are none.
func SortedPercentile[T float32 | float64](xs []T, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(q*float64(len(xs))+0.5) - 1
	return float64(xs[min(max(i, 0), len(xs)-1)])
}

// Package chaos is the fault-injection suite: a real cluster of `quorumca
// server` containers behind HAProxy, a fleet of simulated devices and an
// admin writing a history of every request, a nemesis that kills, pauses
// and partitions nodes, and a checker that proves, against every node's
// state once the faults are healed, that nothing acknowledged was lost and
// no token was accepted twice. See DESIGN.md.
package chaos

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quorumca/quorumca/authority"
)

// Config of a run.
type Config struct {
	Nodes    int           // 3 or 5
	Short    bool          // one fault of each kind (a run of 2-3 minutes)
	Duration time.Duration // long runs: how long faults are injected
	Seed     uint64        // the long schedule's; 0: from the clock

	Devices        int           // simulated devices (default 100)
	ACMEClients    int           // ACME accounts ordering certificates (default 4)
	Think          time.Duration // a device's pause between requests (default 1s, ±50%)
	RevokeEvery    time.Duration // the admin revokes a certificate this often (default 1s)
	ReplayEvery    time.Duration // a used token is replayed this often (default 500ms)
	RequestTimeout time.Duration // per request; a timeout is an unknown outcome (default 10s)
	Warmup         time.Duration // load before the first fault (default 10s)

	Bounds Bounds
	OutDir string // results: history.jsonl, summary.txt, timeline.svg, logs/
	Logf   func(format string, args ...any)
}

// ConfigFromEnv reads CHAOS_SHORT (1: the short schedule), CHAOS_MINUTES,
// CHAOS_NODES, CHAOS_DEVICES, CHAOS_SEED and CHAOS_OUT.
func ConfigFromEnv() (Config, error) {
	c := Config{Nodes: 3, Duration: 10 * time.Minute}
	c.Short = os.Getenv("CHAOS_SHORT") == "1"
	if s := os.Getenv("CHAOS_MINUTES"); s != "" {
		m, err := strconv.ParseFloat(s, 64)
		if err != nil || m <= 0 {
			return c, fmt.Errorf("chaos: CHAOS_MINUTES=%q is not a positive number", s)
		}
		c.Duration = time.Duration(m * float64(time.Minute))
	}
	for _, v := range []struct {
		name string
		dst  *int
	}{{"CHAOS_NODES", &c.Nodes}, {"CHAOS_DEVICES", &c.Devices}, {"CHAOS_ACME_CLIENTS", &c.ACMEClients}} {
		if s := os.Getenv(v.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return c, fmt.Errorf("chaos: %s=%q is not a positive number", v.name, s)
			}
			*v.dst = n
		}
	}
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return c, fmt.Errorf("chaos: CHAOS_SEED=%q is not a number", s)
		}
		c.Seed = n
	}
	c.OutDir = os.Getenv("CHAOS_OUT")
	return c, nil
}

func (c *Config) defaults() error {
	if c.Nodes != 3 && c.Nodes != 5 {
		return fmt.Errorf("chaos: nodes must be 3 or 5, not %d", c.Nodes)
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Devices <= 0 {
		c.Devices = 100
	}
	if c.ACMEClients <= 0 {
		c.ACMEClients = 4
	}
	set(&c.Duration, 10*time.Minute)
	set(&c.Think, time.Second)
	set(&c.RevokeEvery, time.Second)
	set(&c.ReplayEvery, 500*time.Millisecond)
	set(&c.RequestTimeout, 10*time.Second)
	set(&c.Warmup, 10*time.Second)
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.OutDir == "" {
		c.OutDir = filepath.Join("results", time.Now().Format("20060102-150405"))
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return nil
}

// preflight fails with one clear line for each missing tool.
func preflight(ctx context.Context) error {
	if err := checkDocker(ctx); err != nil {
		return err
	}
	if err := checkHAProxy(); err != nil {
		return err
	}
	for _, t := range []string{"nsenter", "iptables"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("chaos: %s is required to partition nodes and is not installed (Debian: apt-get install util-linux iptables)", t)
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("chaos: partitions run iptables in the nodes' network namespaces (nsenter): run as root")
	}
	return nil
}

// Run runs the suite: build, start the cluster and HAProxy, drive the load
// while the nemesis injects faults, heal, and check. It returns an error
// when the suite could not run; a run that found violations returns a
// verdict that does not pass.
func Run(ctx context.Context, cfg Config) (*Verdict, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := preflight(ctx); err != nil {
		return nil, err
	}
	logf := cfg.Logf
	began := time.Now()
	d := newDocker()
	if err := d.cleanLeftovers(ctx); err != nil {
		logf("cleaning up earlier runs: %v", err)
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	work, err := d.workDir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	run := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffffff)

	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	bin, err := buildBinary(ctx, root, work)
	if err != nil {
		return nil, err
	}
	image, err := d.buildImage(ctx, run, bin)
	if err != nil {
		return nil, err
	}
	defer d.run(context.Background(), "rmi", "-f", image)
	logf("built %s (%.0fs)", image, time.Since(began).Seconds())

	c, err := newCluster(ctx, d, run, image, work, cfg.Nodes)
	defer func() {
		if err := c.close(filepath.Join(cfg.OutDir, "logs")); err != nil {
			logf("cleanup: %v", err)
		}
	}()
	if err != nil {
		return nil, err
	}
	h, err := startHAProxy(ctx, cfg.OutDir, c.nodes)
	if err != nil {
		return nil, err
	}
	defer h.stop()
	formed := awaitCond(ctx, 2*time.Minute, func() bool {
		_, ok := c.adminToken()
		return h.exited() || ok && c.awaitWhole(ctx, 0, h)
	})
	if h.exited() {
		return nil, fmt.Errorf("chaos: haproxy exited: %s", lastLine(readFile(filepath.Join(cfg.OutDir, "haproxy.log"))))
	}
	if !formed {
		_, why := c.converged(ctx)
		return nil, fmt.Errorf("chaos: the cluster did not form within 2 minutes (%s; node logs in %s)", why, filepath.Join(cfg.OutDir, "logs"))
	}
	c.admin, _ = c.adminToken()
	logf("cluster of %d formed behind haproxy at %s (%.0fs)", cfg.Nodes, h.addr, time.Since(began).Seconds())

	start := time.Now()
	hist, err := newHistory(filepath.Join(cfg.OutDir, "history.jsonl"), start)
	if err != nil {
		return nil, err
	}
	defer hist.close()
	w := newWorkload(cfg, h.addr, c.roots, c.admin, hist)
	steps := schedule(cfg.Short, cfg.Duration, cfg.Seed)
	var span time.Duration
	for _, s := range steps {
		span += s.hold + s.quiet
	}
	spare := cfg.Devices/2 + int(1.5*float64(cfg.Warmup+span+time.Duration(len(steps))*10*time.Second)/float64(cfg.RevokeEvery))
	if err := w.mint(ctx, cfg.Devices+spare, run); err != nil {
		return nil, err
	}
	aw, err := newACMEWorkload(ctx, w, h.addr, c.gateway, c.roots, cfg.ACMEClients)
	if err != nil {
		return nil, err
	}
	logf("minted %d tokens, made %d ACME accounts; load starts: %d devices", cfg.Devices+spare, cfg.ACMEClients, cfg.Devices)

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		wg.Go(func() { w.run(stop) })
		wg.Go(func() { aw.run(stop) })
		wg.Wait()
		close(done)
	}()
	issuer, err := issuerCert(filepath.Join(work, "pki", "intermediate.pem"))
	if err != nil {
		return nil, err
	}
	rd := newReader(c.roots, c.admin, issuer)
	n := &nemesis{c: c, h: h, hist: hist, logf: logf}
	n.probe = func(ctx context.Context, targets []string) {
		revoked := revokedCerts(hist.snapshot()) // acknowledged before the heal
		var wg sync.WaitGroup
		for _, nd := range c.nodes {
			if contains(targets, nd.name) {
				wg.Go(func() { rd.probeStatus(ctx, hist, nd, revoked) })
			}
		}
		wg.Wait()
	}
	sleep(ctx, cfg.Warmup)
	for i, s := range steps {
		if ctx.Err() != nil {
			break
		}
		logf("fault %d/%d", i+1, len(steps))
		if !n.run(ctx, s, 2*time.Minute) {
			break
		}
		sleep(ctx, s.quiet)
	}
	close(stop)
	<-done
	logf("load stopped after %.0fs; checking", time.Since(start).Seconds())

	// Heal anything left, wait until every node has applied the same
	// entries, then read every node's state directly.
	if !c.awaitWhole(ctx, 2*time.Minute, h) {
		logf("the cluster is not whole after the run; checking what can be read")
	}
	awaitCond(ctx, time.Minute, func() bool { return c.caughtUp(ctx) })
	ops := hist.snapshot()
	// OCSP and records show a revocation at once, CRLs within the CRL
	// interval: the last ones acknowledged get that long, no more.
	awaitCond(ctx, crlInterval+10*time.Second, func() bool { return rd.crlsList(ctx, c.nodes, acknowledgedRevocations(ops)) })
	states := rd.readStates(ctx, c.nodes, revokedCerts(ops))
	v := check(ops, states, n.faults, cfg.Bounds)
	v.Seconds = time.Since(start).Seconds()

	var sb strings.Builder
	writeSummary(&sb, v, ops, cfg)
	if err := os.WriteFile(filepath.Join(cfg.OutDir, "summary.txt"), []byte(sb.String()), 0o644); err != nil {
		return v, err
	}
	title := fmt.Sprintf("quorumca chaos: %d nodes, %d devices, %d faults: %s", cfg.Nodes, cfg.Devices, len(n.faults), passWord(v))
	if err := writeTimeline(filepath.Join(cfg.OutDir, "timeline.svg"), ops, n.faults, title); err != nil {
		return v, err
	}
	logf("%s", sb.String())
	logf("results in %s (%.0fs in all)", cfg.OutDir, time.Since(began).Seconds())
	return v, hist.close()
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func passWord(v *Verdict) string {
	if v.Pass() {
		return "PASS"
	}
	return "FAIL"
}

// awaitCond polls cond every 250 ms until it holds or timeout passes.
func awaitCond(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		sleep(ctx, 250*time.Millisecond)
	}
	return false
}

// revokedCerts are the certificates whose revocation was acknowledged, by
// serial: OCSP is asked about each.
// acknowledgedRevocations are the serials whose revocation was answered OK.
func acknowledgedRevocations(ops []Op) []string {
	var out []string
	for _, op := range ops {
		if op.Kind == OpRevoke && op.Outcome == OK {
			out = append(out, normSerial(op.Serial))
		}
	}
	return out
}

func revokedCerts(ops []Op) map[string][]byte {
	certs := map[string][]byte{}
	for _, op := range ops {
		if op.Outcome == OK && op.Cert != "" {
			if blk, _ := pem.Decode([]byte(op.Cert)); blk != nil {
				certs[normSerial(op.Serial)] = blk.Bytes
			}
		}
	}
	out := map[string][]byte{}
	for _, op := range ops {
		if op.Kind == OpRevoke && op.Outcome == OK {
			s := normSerial(op.Serial)
			if der, ok := certs[s]; ok {
				out[s] = der
			}
		}
	}
	return out
}

func issuerCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := authority.ParseCertsPEM(b)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

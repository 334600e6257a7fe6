package chaos

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/quorumca/quorumca/internal/freeport"
)

// haproxy is HAProxy on the host, in front of the nodes as in production:
// TCP passthrough (mutual TLS reaches the nodes untouched), health checks
// of /v1/ready over TLS. It listens on 127.0.0.1 only.
type haproxy struct {
	cmd    *exec.Cmd
	addr   string // host:port of the API frontend
	stats  string // URL of the stats CSV
	done   chan struct{}
	client *http.Client
}

func checkHAProxy() error {
	if _, err := exec.LookPath("haproxy"); err != nil {
		return errors.New("chaos: haproxy is required and not installed (Debian: apt-get install haproxy)")
	}
	return nil
}

// haproxyConfig fronts the nodes' APIs. Checks every 500 ms, down after 2
// failures, up after 1 success; a server marked down has its sessions cut
// so clients reconnect elsewhere (a paused or cut-off node would hold them
// otherwise); a connection not made within 200 ms (a LAN) is retried, the
// last time on another server.
func haproxyConfig(listen, stats string, nodes []*cnode) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by the chaos suite.
global
  maxconn 2000

defaults
  mode tcp
  timeout connect 200ms
  timeout client 60s
  timeout server 60s
  timeout check 1s
  retries 3
  option redispatch

frontend api
  bind %s
  default_backend nodes

backend nodes
  balance roundrobin
  option httpchk GET /v1/ready
  http-check expect status 200
  default-server check check-ssl verify none inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
`, listen)
	for _, nd := range nodes {
		fmt.Fprintf(&b, "  server %s %s:%d\n", nd.name, nd.ip, apiPort)
	}
	fmt.Fprintf(&b, `
frontend stats
  mode http
  bind %s
  stats enable
  stats uri /stats
`, stats)
	return b.String()
}

// startHAProxy writes the config into dir and starts HAProxy in the
// foreground as a child that dies with this process.
func startHAProxy(ctx context.Context, dir string, nodes []*cnode) (*haproxy, error) {
	listen, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	stats, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(listen, stats, nodes)), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "haproxy", "-c", "-q", "-f", cfg).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("chaos: haproxy rejects its config: %v: %s", err, strings.TrimSpace(string(out)))
	}
	logf, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		return nil, err
	}
	h := &haproxy{addr: listen, stats: "http://" + stats + "/stats;csv", done: make(chan struct{}),
		client: &http.Client{Timeout: 2 * time.Second}}
	h.cmd = exec.Command("haproxy", "-db", "-f", cfg)
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("chaos: start haproxy: %w", err)
	}
	go func() { h.cmd.Wait(); logf.Close(); close(h.done) }()
	return h, nil
}

func (h *haproxy) stop() {
	if h == nil || h.cmd.Process == nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		h.cmd.Process.Kill()
		<-h.done
	}
}

// exited reports whether HAProxy has stopped.
func (h *haproxy) exited() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// serverStates maps each backend server to HAProxy's view: UP, DOWN, ...
func (h *haproxy) serverStates(ctx context.Context) (map[string]string, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", h.stats, nil)
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	r := csv.NewReader(resp.Body)
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, errors.New("haproxy: empty stats")
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[strings.TrimPrefix(strings.TrimSpace(name), "# ")] = i
	}
	out := map[string]string{}
	for _, row := range rows[1:] {
		if row[col["pxname"]] != "nodes" || row[col["svname"]] == "BACKEND" {
			continue
		}
		out[row[col["svname"]]] = row[col["status"]]
	}
	return out, nil
}

// allUp reports whether HAProxy sees every server up.
func (h *haproxy) allUp(ctx context.Context, n int) bool {
	st, err := h.serverStates(ctx)
	if err != nil || len(st) != n {
		return false
	}
	for _, s := range st {
		if !strings.HasPrefix(s, "UP") {
			return false
		}
	}
	return true
}

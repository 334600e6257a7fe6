package chaos

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/quorumca/quorumca/node"
)

// Ports inside each container.
const (
	apiPort    = 8443
	httpPort   = 8080
	raftPort   = 8300
	gossipPort = 8301
)

// cluster is N `quorumca server` containers on a private Docker network,
// each with its own config dir and a data dir on the host (so a killed or
// restarted node keeps its state).
type cluster struct {
	d       *docker
	run     string
	image   string
	network string
	gateway string // the host's address on the network (HAProxy reaches nodes from it)
	dir     string
	nodes   []*cnode
	roots   *x509.CertPool
	rootPEM []byte
	health  *http.Client
	admin   string // the bootstrap admin token
}

// cnode is one node's container.
type cnode struct {
	name      string // node name and Raft ID: n1, n2, ...
	container string
	ip        string
	cfgDir    string
	dataDir   string
}

func (n *cnode) api() string { return fmt.Sprintf("https://%s:%d", n.ip, apiPort) }

// newCluster writes the PKI and the nodes' configs under dir, creates the
// network and starts the containers. Call close when done, also on error.
func newCluster(ctx context.Context, d *docker, run, image, dir string, n int) (*cluster, error) {
	c := &cluster{d: d, run: run, image: image, dir: dir, network: "qc-chaos-" + run}
	if err := c.createNetwork(ctx); err != nil {
		return c, err
	}
	if err := c.writeConfigs(n); err != nil {
		return c, err
	}
	c.health = &http.Client{Timeout: time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: c.roots}, DisableKeepAlives: true}}
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, nd := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.create(ctx, nd) }()
	}
	wg.Wait()
	return c, errors.Join(errs...)
}

// createNetwork makes a bridge network with a /24 of its own (static node
// addresses survive restarts and reconnects), trying other subnets when
// one is taken.
func (c *cluster) createNetwork(ctx context.Context) error {
	var err error
	for range 20 {
		x, _ := rand.Int(rand.Reader, big.NewInt(250))
		prefix := fmt.Sprintf("10.213.%d", x.Int64()+2)
		args := append([]string{"network", "create", "--driver", "bridge", "--subnet", prefix + ".0/24",
			"--gateway", prefix + ".1"}, c.d.labels(c.run)...)
		if _, err = c.d.run(ctx, append(args, c.network)...); err == nil {
			c.gateway = prefix + ".1"
			return nil
		}
		if !strings.Contains(err.Error(), "overlap") {
			return err
		}
	}
	return err
}

func (c *cluster) prefix() string { return strings.TrimSuffix(c.gateway, ".1") }

// writeConfigs makes the dev PKI (root, issuing key, cluster CA key), the
// gossip key and join secret, and one config dir per node.
func (c *cluster) writeConfigs(n int) error {
	pki, err := node.LoadOrCreateDevPKI(filepath.Join(c.dir, "pki"))
	if err != nil {
		return err
	}
	clusterKey, err := pki.ClusterCAKey()
	if err != nil {
		return err
	}
	scepKey, err := pki.SCEPRAKey()
	if err != nil {
		return err
	}
	if c.rootPEM, err = os.ReadFile(pki.RootFile); err != nil {
		return err
	}
	c.roots = x509.NewCertPool()
	c.roots.AppendCertsFromPEM(c.rootPEM)
	shared := map[string]string{
		"root.pem":         pki.RootFile,
		"intermediate.pem": pki.ChainFile,
		"intermediate.key": strings.TrimPrefix(pki.KeyURI, "softkey:"),
		"cluster-ca.key":   strings.TrimPrefix(clusterKey, "softkey:"),
		"scep-ra.key":      strings.TrimPrefix(scepKey, "softkey:"),
	}
	gossipKey := make([]byte, 32)
	secret := make([]byte, 24)
	rand.Read(gossipKey)
	rand.Read(secret)
	var joins []string
	for i := range n {
		joins = append(joins, fmt.Sprintf("%q", fmt.Sprintf("%s.%d:%d", c.prefix(), 11+i, gossipPort)))
	}
	for i := range n {
		nd := &cnode{name: fmt.Sprintf("n%d", i+1), ip: fmt.Sprintf("%s.%d", c.prefix(), 11+i)}
		nd.container = "qc-chaos-" + c.run + "-" + nd.name
		nd.cfgDir, nd.dataDir = filepath.Join(c.dir, nd.name, "config"), filepath.Join(c.dir, nd.name, "data")
		for _, d := range []string{nd.cfgDir, nd.dataDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return err
			}
		}
		if _, _, err := pki.NodeTLS(nd.cfgDir, []string{serviceName, nd.ip, nd.name, nd.container}); err != nil {
			return err
		}
		for name, src := range shared {
			b, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(nd.cfgDir, name), b, 0o600); err != nil {
				return err
			}
		}
		files := map[string]string{
			"gossip.key":  base64.StdEncoding.EncodeToString(gossipKey) + "\n",
			"join.secret": hex.EncodeToString(secret) + "\n",
			"node.hcl":    nodeConfig(nd, n, strings.Join(joins, ", "), c.gateway),
		}
		for name, s := range files {
			if err := os.WriteFile(filepath.Join(nd.cfgDir, name), []byte(s), 0o600); err != nil {
				return err
			}
		}
		c.nodes = append(c.nodes, nd)
	}
	return nil
}

// nodeConfig is a node's config file: gossip with bootstrap_expect of all
// nodes, production Raft and gossip timings, a software CA key (files
// mounted into every container).
func nodeConfig(nd *cnode, n int, retryJoin, gateway string) string {
	return fmt.Sprintf(`# Written by the chaos suite.
node_name = %[1]q
data_dir  = "/var/lib/quorumca"

api {
  listen        = "0.0.0.0:%[3]d"
  advertise     = "%[2]s:%[3]d"
  tls_cert_file = "/etc/quorumca/tls.pem"
  tls_key_file  = "/etc/quorumca/tls.key"
  # ACME clients reach the service name through HAProxy.
  public_urls   = ["https://%[2]s:%[3]d", "https://ca.chaos.test"]
}

http {
  listen = "0.0.0.0:%[4]d"
}

raft {
  listen    = "0.0.0.0:%[5]d"
  advertise = "%[2]s:%[5]d"
}

gossip {
  listen     = "0.0.0.0:%[6]d"
  advertise  = "%[2]s:%[6]d"
  key_file   = "/etc/quorumca/gossip.key"
  retry_join = [%[7]s]
}

cluster {
  bootstrap_expect = %[8]d
  voters           = %[9]d
  join_secret_file = "/etc/quorumca/join.secret"
  ca_key           = "softkey:/etc/quorumca/cluster-ca.key"
}

authority "default" {
  root_file  = "/etc/quorumca/root.pem"
  chain_file = "/etc/quorumca/intermediate.pem"
  key        = "softkey:/etc/quorumca/intermediate.key"
  # SCEP devices encrypt their requests to this RA key.
  scep_ra_key = "softkey:/etc/quorumca/scep-ra.key"
}

provisioner "devices" {
  kind        = "enrollment-token"
  dns         = [".devices.chaos.test"]
  default_ttl = "24h"
  max_ttl     = "72h"
  key_types   = ["P-256"]
  eku         = "client"
  renew_grace = "1h"
}

# ACME clients run on the host: the nodes validate their http-01
# challenges at the host's address on this network.
provisioner "acme" {
  kind        = "acme"
  ip          = ["%[11]s/32"]
  default_ttl = "24h"
  max_ttl     = "72h"
  eku         = "server"
}

acme {
  http01_port = %[12]d
}

# A revocation is on the CRL within this interval (crlInterval).
crl {
  interval = "%[10]s"
}

# Devices renew about once a second: the per-lineage limits are not what
# this suite checks.
lineage_limits {
  renewals_per_minute           = 600
  renewal_burst                 = 100
  holder_revocations_per_minute = 600
  holder_revocation_burst       = 100
}

allow_insecure_soft_signer = true
bootstrap_admin_token_file = "/var/lib/quorumca/admin.token"
`, nd.name, nd.ip, apiPort, httpPort, raftPort, gossipPort, retryJoin, n, votersFor(n), crlInterval, gateway, acmeHTTP01Port)
}

// acmeHTTP01Port is where the workload answers http-01 challenges, on the
// host's address on the cluster's network (which this suite created).
const acmeHTTP01Port = 5402

// crlInterval is the nodes' CRL interval: the checker gives revocations
// that long (and the time to sign and replicate one CRL) to reach every
// node's CRL before it reads them.
const crlInterval = 2 * time.Second

// votersFor is the number of voters of an n-node cluster: 3, or 5 from 5.
func votersFor(n int) int {
	if n >= 5 {
		return 5
	}
	return 3
}

// create starts a node's container for the first time.
func (c *cluster) create(ctx context.Context, nd *cnode) error {
	args := []string{"run", "-d", "--name", nd.container, "--hostname", nd.name,
		"--network", c.network, "--ip", nd.ip,
		"--user", fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid()),
		"-v", nd.cfgDir + ":/etc/quorumca:ro", "-v", nd.dataDir + ":/var/lib/quorumca"}
	args = append(args, c.d.labels(c.run)...)
	args = append(args, c.image, "server", "-config", "/etc/quorumca/node.hcl", "-log-level", "info")
	_, err := c.d.run(ctx, args...)
	return err
}

// close saves every node's log into logDir (if set) and removes the
// containers and the network.
func (c *cluster) close(logDir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	for _, nd := range c.nodes {
		if logDir != "" {
			cmd := exec.CommandContext(ctx, "docker", "logs", "--timestamps", nd.container)
			if out, err := cmd.CombinedOutput(); err == nil || len(out) > 0 {
				os.MkdirAll(logDir, 0o755)
				os.WriteFile(filepath.Join(logDir, nd.name+".log"), out, 0o644)
			}
		}
	}
	var names []string
	for _, nd := range c.nodes {
		names = append(names, nd.container)
	}
	if len(names) > 0 {
		if _, err := c.d.run(ctx, append([]string{"rm", "-f", "-v"}, names...)...); err != nil && !strings.Contains(err.Error(), "No such container") {
			errs = append(errs, err)
		}
	}
	if c.gateway != "" {
		if _, err := c.d.run(ctx, "network", "rm", c.network); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// status is a node's /v1/health.
type status struct {
	Node        string  `json:"node"`
	State       string  `json:"raft_state"`
	Leader      string  `json:"leader"`
	Term        uint64  `json:"term"`
	Applied     uint64  `json:"applied_index"`
	Commit      uint64  `json:"commit_index"`
	LastContact float64 `json:"last_contact_seconds"`
	Voters      int     `json:"voters"`
	NonVoters   int     `json:"nonvoters"`
}

func (c *cluster) status(ctx context.Context, nd *cnode) (*status, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", nd.api()+"/v1/health", nil)
	resp, err := c.health.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var s status
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: health: %s", nd.name, resp.Status)
	}
	return &s, json.NewDecoder(resp.Body).Decode(&s)
}

// ready reports whether a node answers 200 on /v1/ready.
func (c *cluster) ready(ctx context.Context, nd *cnode) bool {
	req, _ := http.NewRequestWithContext(ctx, "GET", nd.api()+"/v1/ready", nil)
	resp, err := c.health.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// statuses asks every node at once; a node that does not answer is nil.
func (c *cluster) statuses(ctx context.Context) []*status {
	out := make([]*status, len(c.nodes))
	var wg sync.WaitGroup
	for i, nd := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); out[i], _ = c.status(ctx, nd) }()
	}
	wg.Wait()
	return out
}

// leader is the node that says it leads (the highest term, if two do).
func (c *cluster) leader(ctx context.Context) *cnode {
	var best *cnode
	var term uint64
	for i, s := range c.statuses(ctx) {
		if s != nil && s.State == "Leader" && s.Term >= term {
			best, term = c.nodes[i], s.Term
		}
	}
	return best
}

// converged reports whether every node answers, is ready, agrees on one
// leader, counts the expected voters and has applied what it committed.
func (c *cluster) converged(ctx context.Context) (bool, string) {
	sts := c.statuses(ctx)
	want := votersFor(len(c.nodes))
	leader := ""
	for i, s := range sts {
		nd := c.nodes[i]
		switch {
		case s == nil:
			return false, nd.name + " does not answer"
		case s.Leader == "":
			return false, nd.name + " knows no leader"
		case leader != "" && s.Leader != leader:
			return false, "nodes disagree on the leader"
		case s.Voters != want:
			return false, fmt.Sprintf("%s counts %d voters, want %d", nd.name, s.Voters, want)
		case s.Commit > s.Applied+10:
			return false, fmt.Sprintf("%s has %d entries to apply", nd.name, s.Commit-s.Applied)
		case !c.ready(ctx, nd):
			return false, nd.name + " is not ready"
		}
		leader = s.Leader
	}
	return true, ""
}

// caughtUp reports whether every node has applied the same index (no
// writes running) and agrees on the leader.
func (c *cluster) caughtUp(ctx context.Context) bool {
	sts := c.statuses(ctx)
	for _, s := range sts {
		if s == nil || s.Leader == "" || s.Leader != sts[0].Leader || s.Applied != sts[0].Applied {
			return false
		}
	}
	return true
}

// adminToken reads the bootstrap admin token from whichever node wrote it.
func (c *cluster) adminToken() (string, bool) {
	for _, nd := range c.nodes {
		if b, err := os.ReadFile(filepath.Join(nd.dataDir, "admin.token")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return strings.TrimSpace(string(b)), true
		}
	}
	return "", false
}

// Faults on containers.

func (c *cluster) signal(ctx context.Context, nd *cnode, sig string) error {
	_, err := c.d.run(ctx, "kill", "-s", sig, nd.container)
	return err
}

func (c *cluster) start(ctx context.Context, nd *cnode) error {
	_, err := c.d.run(ctx, "start", nd.container)
	return err
}

func (c *cluster) disconnect(ctx context.Context, nd *cnode) error {
	_, err := c.d.run(ctx, "network", "disconnect", "-f", c.network, nd.container)
	return err
}

func (c *cluster) connect(ctx context.Context, nd *cnode) error {
	_, err := c.d.run(ctx, "network", "connect", "--ip", nd.ip, c.network, nd.container)
	return err
}

// iptables runs iptables in a node's network namespace (the image has no
// shell or tools: the host's iptables enters the namespace).
func (c *cluster) iptables(ctx context.Context, nd *cnode, args ...string) error {
	pid, err := c.d.run(ctx, "inspect", "-f", "{{.State.Pid}}", nd.container)
	if err != nil {
		return err
	}
	if pid == "0" {
		return fmt.Errorf("%s is not running", nd.name)
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", pid, "-n", "iptables", "-w"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nsenter %s iptables %s: %v: %s", nd.name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// isolate drops all traffic between nd and the other nodes, both ways. The
// host (HAProxy, the test) still reaches it.
func (c *cluster) isolate(ctx context.Context, nd *cnode) error {
	for _, o := range c.nodes {
		if o == nd {
			continue
		}
		if err := c.iptables(ctx, nd, "-I", "INPUT", "-s", o.ip, "-j", "DROP"); err != nil {
			return err
		}
		if err := c.iptables(ctx, nd, "-I", "OUTPUT", "-d", o.ip, "-j", "DROP"); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) unisolate(ctx context.Context, nd *cnode) error {
	if err := c.iptables(ctx, nd, "-F", "INPUT"); err != nil {
		return err
	}
	return c.iptables(ctx, nd, "-F", "OUTPUT")
}

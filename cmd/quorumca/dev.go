//go:build !agent

package main

import (
	"cmp"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quorumca/quorumca/acme"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/node"
)

// Dev mode: a CA that works in one command, for trying quorumca out. Unless
// -raft-addr and -http-addr say otherwise, Raft ports are the API ports
// plus raftPortOffset, and the plain-HTTP ports serving CRLs and OCSP the
// API ports plus httpPortOffset.
const (
	raftPortOffset = 1000
	httpPortOffset = 2000
)

func init() {
	register(&command{name: "dev", synopsis: "Run a throwaway CA (one or more nodes) with a software key", setup: dev})
}

func dev(fs *flag.FlagSet) func([]string) int {
	dataDir := fs.String("data-dir", "", "keep state, PKI and tokens here (default: a temporary directory removed on exit)")
	listen := fs.String("listen", "127.0.0.1:8443", "API address of the first node; further nodes count the port up")
	nodes := fs.Int("nodes", 1, "number of nodes to run in this process")
	only := fs.Int("node", 0, "run only node `N` of the -nodes, so nodes can be stopped one by one: one process per node, node 1 first, all with the same -data-dir and -listen")
	adminListen := fs.String("admin-listen", "", "serve pprof and metrics of the first node here (e.g. 127.0.0.1:6060), for profiling")
	raftAddr := fs.String("raft-addr", "", "Raft address of the first node; further nodes count the port up (default: the -listen port + 1000)")
	httpAddr := fs.String("http-addr", "", "plain-HTTP address (CRLs, OCSP) of the first node; further nodes count the port up (default: the -listen port + 2000)")
	var acmeCfg acme.ValidatorConfig
	fs.IntVar(&acmeCfg.HTTP01Port, "acme-http01-port", 0, "the port ACME http-01 challenges are validated on (default 80)")
	fs.IntVar(&acmeCfg.TLSALPNPort, "acme-tlsalpn01-port", 0, "the port ACME tls-alpn-01 challenges are validated on (default 443)")
	resolver := fs.String("acme-resolver", "", "a DNS server (host:port) for ACME validations (default: the system's)")
	var lf logFlags
	lf.register(fs, "error")
	return func([]string) int {
		sigs := signals()
		serverGC()
		log, err := lf.logger()
		if err != nil {
			return fail("dev: %v", err)
		}
		if *nodes < 1 || *nodes > 9 {
			return fail("dev: -nodes must be 1 to 9")
		}
		if *only < 0 || *only > *nodes {
			return fail("dev: -node must be 1 to -nodes")
		}
		apiPorts, err := parsePorts("listen", *listen, *nodes)
		if err != nil {
			return fail("dev: %v", err)
		}
		host, port := apiPorts.host, apiPorts.port
		raftPorts, err := parsePorts("raft-addr", cmp.Or(*raftAddr, apiPorts.offset(raftPortOffset)), *nodes)
		if err != nil {
			return fail("dev: %v", err)
		}
		httpPorts, err := parsePorts("http-addr", cmp.Or(*httpAddr, apiPorts.offset(httpPortOffset)), *nodes)
		if err != nil {
			return fail("dev: %v", err)
		}
		if *only > 0 && (*dataDir == "" || port == 0) {
			return fail("dev: -node needs -data-dir and a -listen port: the nodes' processes share them")
		}

		dir, temporary := *dataDir, false
		if dir == "" {
			if dir, err = os.MkdirTemp("", "quorumca-dev-"); err != nil {
				return fail("dev: %v", err)
			}
			temporary = true
			defer os.RemoveAll(dir)
		}
		if dir, err = filepath.Abs(dir); err != nil {
			return fail("dev: %v", err)
		}
		pki, err := node.LoadOrCreateDevPKI(dir)
		if err != nil {
			return fail("dev: pki: %v", err)
		}
		secret, err := devSecret(filepath.Join(dir, "join.secret"))
		if err != nil {
			return fail("dev: %v", err)
		}
		clusterKey, err := pki.ClusterCAKey()
		if err != nil {
			return fail("dev: %v", err)
		}

		var running []*node.Node
		var baseURL string // the first node's, which it bootstraps with ("" with -only for another)
		defer func() {
			if *only > 0 { // the others run on in their own processes: hand over
				for _, n := range running {
					n.Close()
				}
				return
			}
			node.StopAll(running)
		}()
		for i := range *nodes {
			if *only > 0 && i != *only-1 {
				continue
			}
			name := fmt.Sprintf("node%d", i+1)
			ndir := filepath.Join(dir, name)
			certFile, keyFile, err := pki.NodeTLS(ndir, []string{host, "localhost", "127.0.0.1"})
			if err != nil {
				return fail("dev: %v", err)
			}
			apiAddr, raftAddr, httpAddr := apiPorts.addr(i), raftPorts.addr(i), httpPorts.addr(i)
			if httpPorts.port == 0 { // the authority's base URL needs it now
				if httpAddr, err = freeAddr(httpPorts.host); err != nil {
					return fail("dev: %v", err)
				}
			}
			cfg := node.Config{
				NodeName: name, DataDir: ndir,
				APIListen: apiAddr, TLSCertFile: certFile, TLSKeyFile: keyFile, HTTPListen: httpAddr,
				RaftListen: raftAddr, JoinSecret: secret, ClusterCAKey: clusterKey,
				Logger: log, AllowInsecureSoftSigner: true, ACME: acmeCfg,
			}
			if *resolver != "" {
				cfg.ACME.Resolvers = []string{*resolver}
			}
			if port != 0 {
				// Token audiences follow this start's -listen (nothing of it is
				// kept in the data dir): each name the dev TLS certificate
				// covers, at this node's port.
				for _, h := range []string{host, "localhost", "127.0.0.1"} {
					if u := "https://" + net.JoinHostPort(h, strconv.Itoa(port+i)); !slices.Contains(cfg.APIPublicURLs, u) {
						cfg.APIPublicURLs = append(cfg.APIPublicURLs, u)
					}
				}
			} // else the default: https:// + the address the node listens at
			if i == 0 {
				cfg.AdminListen = *adminListen
				adminCA, err := pki.AdminAuthority()
				if err != nil {
					return fail("dev: %v", err)
				}
				// Its intermediate names this start's root CRL and
				// certificate URLs (signed again if -listen changed).
				if err := pki.LinkIntermediate("http://" + httpAddr); err != nil {
					return fail("dev: %v", err)
				}
				// The dev authority's OCSP answers are signed by a delegated
				// responder, as production ones should be.
				ca := pki.Authority("http://" + httpAddr)
				baseURL = ca.BaseURL
				if ca.OCSPResponderKey, err = pki.OCSPResponderKey(); err != nil {
					return fail("dev: %v", err)
				}
				// And SCEP requests are encrypted to an RA key of its own.
				if ca.SCEPRAKey, err = pki.SCEPRAKey(); err != nil {
					return fail("dev: %v", err)
				}
				cfg.Bootstrap = true
				cfg.Authorities = []*node.AuthorityConfig{ca, adminCA}
				cfg.Provisioners = devProvisioners()
				cfg.BootstrapAdminTokenFile = filepath.Join(dir, "admin.token")
			} else if port != 0 {
				cfg.Join = []string{"https://" + net.JoinHostPort(host, strconv.Itoa(port))}
			} else {
				cfg.Join = []string{"https://" + running[0].APIAddr()}
			}
			n, err := node.Start(cfg)
			if err != nil {
				return fail("dev: %s: %v", name, err)
			}
			running = append(running, n)
		}
		if err := waitReady(running, filepath.Join(dir, "admin.token"), baseURL, time.Minute); err != nil {
			return fail("dev: %v", err)
		}
		adminToken, err := os.ReadFile(filepath.Join(dir, "admin.token"))
		if err != nil {
			return fail("dev: %v", err)
		}
		example := exampleScript(dir, "https://"+running[0].APIAddr(), "http://"+running[0].HTTPAddr())
		if err := os.WriteFile(filepath.Join(dir, "example.sh"), []byte(example), 0o755); err != nil {
			return fail("dev: %v", err)
		}
		printBanner(os.Stdout, dir, temporary, running, pki, strings.TrimSpace(string(adminToken)), example)

		// A SIGHUP reloads each node's API certificate from its file.
		waitForStop(sigs, func() {
			for _, n := range running {
				n.Reload(nil)
			}
		})
		fmt.Fprintln(os.Stderr, "quorumca dev: stopping")
		return 0
	}
}

// devProvisioners: the default enrollment-token provisioner, and an ACME
// directory at /acme/acme/directory for any DNS name and loopback
// addresses, so certbot or lego can try the CA at once.
func devProvisioners() []*node.ProvisionerConfig {
	return []*node.ProvisionerConfig{
		{Provisioner: fsm.Provisioner{Name: "default", Kind: fsm.KindEnrollmentToken, Authority: authority.DefaultAuthority, Policy: authority.DefaultPolicy()}},
		{Provisioner: fsm.Provisioner{Name: "acme", Kind: fsm.KindACME, Authority: authority.DefaultAuthority, Policy: fsm.Policy{
			DNS: []string{"*"}, IP: []string{"127.0.0.0/8", "::1/128"}, AllowWildcard: true, EKU: "server",
			DefaultTTL: 24 * time.Hour, MaxTTL: 90 * 24 * time.Hour}}},
	}
}

// ports is where each node of a dev cluster listens for one purpose: node
// i at port+i on host, or at any free port when port is 0.
type ports struct {
	host string
	port int
}

func parsePorts(flagName, addr string, nodes int) (ports, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return ports{}, fmt.Errorf("-%s: %v", flagName, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port+nodes-1 > 65535 {
		return ports{}, fmt.Errorf("-%s: %s: the port must leave room for %d node(s)", flagName, addr, nodes)
	}
	return ports{host, port}, nil
}

func (p ports) addr(i int) string {
	if p.port == 0 {
		return net.JoinHostPort(p.host, "0")
	}
	return net.JoinHostPort(p.host, strconv.Itoa(p.port+i))
}

// offset is the default address of another purpose: the same host, the
// port moved by d (any port stays any).
func (p ports) offset(d int) string {
	if p.port == 0 {
		return p.addr(0)
	}
	return net.JoinHostPort(p.host, strconv.Itoa(p.port+d))
}

// freeAddr returns a host:port that was free a moment ago.
func freeAddr(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// devSecret reads or creates the join secret nodes of a dev cluster share.
func devSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	s := hex.EncodeToString(b)
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

// waitReady waits until every node knows the leader, sees the authority
// with this start's links (baseURL, and its intermediate signed for them:
// a restart on another -listen updates them) and its own address, and the
// bootstrap admin token has been written.
func waitReady(nodes []*node.Node, tokenFile, baseURL string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ready := true
		if _, err := os.Stat(tokenFile); err != nil {
			ready = false
		}
		for _, n := range nodes {
			a, aerr := n.FSM().Authority(authority.DefaultAuthority)
			me, merr := n.FSM().Node(n.Name())
			if n.Cluster().Status().LeaderID == "" || aerr != nil || merr != nil || me.APIAddr != n.APIAddr() || !linkedTo(a, baseURL) {
				ready = false
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the cluster did not become ready in time (run with -log-level info to see why)")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// linkedTo says whether an authority names baseURL, and so does the
// intermediate it issues with.
func linkedTo(a *fsm.Authority, baseURL string) bool {
	if baseURL == "" {
		return true // another process bootstraps
	}
	if a.BaseURL != baseURL {
		return false
	}
	for _, iss := range a.ActiveIssuers() {
		c, err := x509.ParseCertificate(iss.Chain[0])
		if err != nil || len(c.CRLDistributionPoints) == 0 || !strings.HasPrefix(c.CRLDistributionPoints[0], baseURL+"/") {
			return false
		}
	}
	return true
}

// exampleScript is a shell session that gets, renews and checks a
// certificate with curl and openssl only. It is printed and saved as
// example.sh; tests run it.
func exampleScript(dir, api, plain string) string {
	return fmt.Sprintf(`QCA=%s
QCA_HTTP=%s
QCA_DIR=%s
# 1. An admin mints a single-use enrollment token for one name.
TOKEN=$(curl -sS --cacert "$QCA_DIR/root.pem" -H "Authorization: Bearer $(cat "$QCA_DIR/admin.token")" \
  -d '{"sans": ["dev1.example.internal"], "ttl": "1h"}' "$QCA/v1/admin/tokens" \
  | awk -F'"' '/"token"/ {print $4}')
# 2. The device makes its own key and a certificate request.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout dev1.key \
  -subj /CN=dev1.example.internal -out dev1.csr 2>/dev/null
# 3. It trades token and request for a certificate.
curl -sS --cacert "$QCA_DIR/root.pem" \
  -d "{\"token\": \"$TOKEN\", \"csr\": \"$(awk '{printf "%%s\\n", $0}' dev1.csr)\"}" "$QCA/v1/sign" \
  | awk -F'"' '/"certificate"/ {gsub(/\\n/, "\n", $4); printf "%%s", $4}' > dev1.pem
openssl verify -CAfile "$QCA_DIR/root.pem" -untrusted "$QCA_DIR/intermediate.pem" dev1.pem
# 4. Later it renews, authenticated by its current certificate (mTLS): no token.
curl -sS --cacert "$QCA_DIR/root.pem" --cert dev1.pem --key dev1.key -X POST "$QCA/v1/renew" \
  | awk -F'"' '/"certificate"/ {gsub(/\\n/, "\n", $4); printf "%%s", $4}' > dev1-renewed.pem
openssl verify -CAfile "$QCA_DIR/root.pem" -untrusted "$QCA_DIR/intermediate.pem" dev1-renewed.pem
# 5. Anyone checks revocation over plain HTTP (OCSP; the CRL is at $QCA_HTTP/v1/crl).
openssl ocsp -issuer "$QCA_DIR/intermediate.pem" -cert dev1-renewed.pem -url "$QCA_HTTP/v1/ocsp" \
  -CAfile "$QCA_DIR/root.pem" -no_nonce 2>&1 | grep dev1
`, api, plain, dir)
}

func printBanner(w io.Writer, dir string, temporary bool, nodes []*node.Node, pki *node.DevPKI, adminToken, example string) {
	where := dir
	if temporary {
		where += " (temporary: deleted on exit; use -data-dir to keep it)"
	}
	fmt.Fprintf(w, "quorumca dev: %d node(s) ready. NOT FOR PRODUCTION: the CA key is a file.\n\n", len(nodes))
	fmt.Fprintf(w, "  Data dir     %s\n", where)
	for _, n := range nodes {
		fmt.Fprintf(w, "  API          https://%s  (%s; CRL and OCSP on http://%s)\n", n.APIAddr(), n.Name(), n.HTTPAddr())
	}
	fmt.Fprintf(w, "  Root CA      %s\n", pki.RootFile)
	fmt.Fprintf(w, "  SHA-256      %s\n", fingerprint(authority.Fingerprint(pki.Root())))
	fmt.Fprintf(w, "  Admin token  %s\n", adminToken)
	fmt.Fprintf(w, "               (also in %s)\n\n", filepath.Join(dir, "admin.token"))
	fmt.Fprintf(w, "Get a certificate with curl and openssl (or run: sh %s):\n\n", filepath.Join(dir, "example.sh"))
	for _, l := range strings.Split(strings.TrimRight(example, "\n"), "\n") {
		fmt.Fprintln(w, "  "+l)
	}
	fmt.Fprintln(w, "\nPress Ctrl-C to stop.")
}

// fingerprint formats hex as colon-separated upper-case pairs, as openssl does.
func fingerprint(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strings.ToUpper(h[i : i+2]))
	}
	return b.String()
}

package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/quorumca/quorumca/authority"
)

// peer is another CA's enrollment API, driven by the same fleet as
// quorumca's (bench peers).
type peer struct {
	name      string
	signPath  string // POST: the enrollment request
	readyPath string // GET: opens the kept-alive connections before the measured phase
	// body is a device's enrollment request: its CSR (PEM) and, if the
	// peer takes one, a one-time token the harness makes for it.
	body func(addr, name string, csr []byte) ([]byte, error)
}

// stepProvisioner is a step-ca JWK provisioner: the harness holds its key
// and signs each device's one-time token, as `step ca token` does.
type stepProvisioner struct {
	Name string
	Key  crypto.Signer
	KID  string // the key's RFC 7638 thumbprint, as step's tools set it
}

// token is a one-time token for name at the step-ca at addr: a JWT signed
// by the provisioner key, for the sign endpoint's audience. It carries no
// iat: step-ca refuses tokens issued before it started, and iat has whole
// seconds.
func (p *stepProvisioner) token(addr, name string, now time.Time) (string, error) {
	return authority.SignJWT(p.Key, p.KID, nil, map[string]any{
		"iss": p.Name, "sub": name, "sans": []string{name}, "aud": addr + "/1.0/sign",
		"jti": randomHex(16), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(2 * time.Hour).Unix(),
	})
}

func (p *stepProvisioner) peer() *peer {
	return &peer{name: "step-ca", signPath: "/1.0/sign", readyPath: "/health",
		body: func(addr, name string, csr []byte) ([]byte, error) {
			ott, err := p.token(addr, name, time.Now())
			if err != nil {
				return nil, err
			}
			return json.Marshal(map[string]string{"csr": string(csr), "ott": ott})
		}}
}

func cfsslPeer() *peer {
	return &peer{name: "cfssl", signPath: "/api/v1/cfssl/sign", readyPath: "/api/v1/cfssl/health",
		body: func(_, _ string, csr []byte) ([]byte, error) {
			return json.Marshal(map[string]string{"certificate_request": string(csr)})
		}}
}

// A small PKI for a peer CA, written as its tools would: PEM certificates,
// unencrypted PEM EC keys.
type pkiFiles struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCA(cn string, parent *pkiFiles, maxPath int) (*pkiFiles, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: maxPath, MaxPathLenZero: maxPath == 0,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	signer, issuer := crypto.Signer(key), tmpl
	if parent != nil {
		signer, issuer = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &pkiFiles{cert: cert, key: key}, nil
}

func (p *pkiFiles) write(certFile, keyFile string) error {
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.cert.Raw}), 0o644); err != nil {
		return err
	}
	if keyFile == "" {
		return nil
	}
	der, err := x509.MarshalECPrivateKey(p.key.(*ecdsa.PrivateKey))
	if err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// writeStepCA writes, under dir, what `step ca init` would for a CA at
// addr (host:port): a root and an intermediate (P-256), a JWK provisioner
// and config/ca.json with a badger database. It returns the root's file
// and the provisioner.
func writeStepCA(dir, addr string) (string, *stepProvisioner, error) {
	for _, d := range []string{"certs", "secrets", "config", "db"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return "", nil, err
		}
	}
	root, err := newCA("bench step-ca Root CA", nil, 1)
	if err != nil {
		return "", nil, err
	}
	inter, err := newCA("bench step-ca Intermediate CA", root, 0)
	if err != nil {
		return "", nil, err
	}
	rootFile := filepath.Join(dir, "certs", "root_ca.crt")
	interFile, interKey := filepath.Join(dir, "certs", "intermediate_ca.crt"), filepath.Join(dir, "secrets", "intermediate_ca_key")
	if err := root.write(rootFile, ""); err != nil {
		return "", nil, err
	}
	if err := inter.write(interFile, interKey); err != nil {
		return "", nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	jwk := jose.JSONWebKey{Key: key.Public(), Algorithm: string(jose.ES256), Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", nil, err
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	prov := &stepProvisioner{Name: "bench", Key: key, KID: jwk.KeyID}
	host := addr
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		host = addr[:i]
	}
	cfg := map[string]any{
		"root":            rootFile,
		"federatedRoots":  nil,
		"crt":             interFile,
		"key":             interKey,
		"address":         addr,
		"insecureAddress": "",
		"dnsNames":        []string{host},
		"logger":          map[string]any{"format": "text"},
		"db":              map[string]any{"type": "badgerv2", "dataSource": filepath.Join(dir, "db")},
		"authority": map[string]any{
			"provisioners": []any{map[string]any{"type": "JWK", "name": prov.Name, "key": jwk}},
		},
		"tls": map[string]any{
			"cipherSuites": []string{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
			"minVersion":   1.2, "maxVersion": 1.3, "renegotiation": false,
		},
	}
	return rootFile, prov, writeJSON(filepath.Join(dir, "config", "ca.json"), cfg)
}

// writeCFSSL writes, under dir, a CA (P-256) for `cfssl serve` and a
// signing configuration whose default profile issues what quorumca's
// default profile does: 24 h, digital signature, server and client auth.
// It returns the CA certificate's file.
func writeCFSSL(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	ca, err := newCA("bench CFSSL CA", nil, 0)
	if err != nil {
		return "", err
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := ca.write(caFile, filepath.Join(dir, "ca-key.pem")); err != nil {
		return "", err
	}
	cfg := map[string]any{"signing": map[string]any{"default": map[string]any{
		"expiry": "24h", "usages": []string{"digital signature", "server auth", "client auth"},
	}}}
	return caFile, writeJSON(filepath.Join(dir, "config.json"), cfg)
}

// PeersConfig is a bench peers run: quorumca and, side by side, the peer
// CAs whose binaries are given, each driven by the same fleet, one after
// the other.
type PeersConfig struct {
	Dir         string // work directory: each CA's PKI, configuration, data and log
	Quorumca    string // this binary: runs `dev`, one node
	Version     string // this binary's version, for the report
	StepCA      string // the step-ca binary; "" skips step-ca
	CFSSL       string // the cfssl binary; "" skips CFSSL
	Port        int    // quorumca's API port (dev also takes +1000 and +2000); step-ca Port+1, CFSSL Port+2
	Duration    time.Duration
	Concurrency int
	Devices     int // each CA's fleet
	Progress    io.Writer
	Ceiling     float64
}

// PeersResult is what bench peers writes as JSON: a run per CA.
type PeersResult struct {
	Kind    string    `json:"kind"` // peers
	Results []*Result `json:"results"`
	Errors  []string  `json:"errors,omitempty"`
	Machine Machine   `json:"machine"`
	Started time.Time `json:"started"`
}

// WriteJSON writes r to path.
func (r *PeersResult) WriteJSON(path string) error { return writeJSON(path, r) }

// caUnderTest is how bench peers sets up, starts and drives one CA.
type caUnderTest struct {
	name string // quorumca, step-ca, cfssl: its directory, log and JSON
	bin  string
	// setup configures the CA in dir; it returns the command line, the
	// address the fleet drives and the fleet's Config.
	setup func(dir string) (args []string, cfg Config, err error)
	// ready says whether the started CA answers.
	ready func(ctx context.Context, dir string, cfg Config) bool
}

// Peers runs quorumca and the peer CAs, one at a time, each with the same
// fleet settings and the CPU of its process measured over the measured
// phase. A CA that fails is reported in Errors and the others still run.
func Peers(ctx context.Context, cfg PeersConfig) *PeersResult {
	if cfg.Port <= 0 {
		cfg.Port = 19743
	}
	out := &PeersResult{Kind: "peers", Machine: thisMachine(), Started: time.Now()}
	for _, ca := range peerCAs(cfg) {
		if ca.bin == "" {
			continue
		}
		r, err := runCA(ctx, cfg, ca)
		if r != nil && ca.name == "quorumca" && cfg.Version != "" {
			r.CA = "quorumca " + cfg.Version + " (dev, 1 node)"
		}
		if err != nil {
			out.Errors = append(out.Errors, fmt.Sprintf("%s: %v", ca.name, err))
			continue
		}
		out.Results = append(out.Results, r)
	}
	return out
}

func peerCAs(cfg PeersConfig) []caUnderTest {
	local := "127.0.0.1"
	qAddr := fmt.Sprintf("%s:%d", local, cfg.Port)
	sAddr := fmt.Sprintf("%s:%d", local, cfg.Port+1)
	cAddr := fmt.Sprintf("%s:%d", local, cfg.Port+2)
	return []caUnderTest{{
		name: "quorumca", bin: cfg.Quorumca,
		setup: func(dir string) ([]string, Config, error) {
			return []string{"dev", "-nodes", "1", "-data-dir", dir, "-listen", qAddr},
				Config{Addr: "https://" + qAddr, CAFile: filepath.Join(dir, "root.pem")}, nil
		},
		ready: func(ctx context.Context, dir string, c Config) bool {
			tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
			if err != nil || len(tok) == 0 || !answers(ctx, c, "/v1/ready") {
				return false
			}
			return true
		},
	}, {
		name: "step-ca", bin: cfg.StepCA,
		setup: func(dir string) ([]string, Config, error) {
			root, prov, err := writeStepCA(dir, sAddr)
			return []string{filepath.Join(dir, "config", "ca.json")},
				Config{Addr: "https://" + sAddr, CAFile: root, peer: prov.peer()}, err
		},
		ready: func(ctx context.Context, _ string, c Config) bool { return answers(ctx, c, "/health") },
	}, {
		name: "cfssl", bin: cfg.CFSSL,
		setup: func(dir string) ([]string, Config, error) {
			caFile, err := writeCFSSL(dir)
			return []string{"serve", "-address", local, "-port", fmt.Sprint(cfg.Port + 2),
					"-ca", caFile, "-ca-key", filepath.Join(dir, "ca-key.pem"), "-config", filepath.Join(dir, "config.json")},
				Config{Addr: "http://" + cAddr, CAFile: caFile, peer: cfsslPeer()}, err
		},
		ready: func(ctx context.Context, _ string, c Config) bool { return answers(ctx, c, "/api/v1/cfssl/health") },
	}}
}

// answers says whether GET path at c.Addr answers 200, the server's
// certificate checked against c.CAFile.
func answers(ctx context.Context, c Config, path string) bool {
	roots := x509.NewCertPool()
	if b, err := os.ReadFile(c.CAFile); err != nil || !roots.AppendCertsFromPEM(b) {
		return false
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Addr+path, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// runCA sets up, starts and drives one CA, and stops it.
func runCA(ctx context.Context, pc PeersConfig, ca caUnderTest) (*Result, error) {
	dir := filepath.Join(pc.Dir, ca.name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	args, cfg, err := ca.setup(dir)
	if err != nil {
		return nil, fmt.Errorf("configuring: %w", err)
	}
	logFile := filepath.Join(pc.Dir, ca.name+".log")
	log, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(ca.bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer stopProcess(cmd, exited)
	deadline := time.Now().Add(60 * time.Second)
	for !ca.ready(ctx, dir, cfg) {
		select {
		case <-exited:
			return nil, fmt.Errorf("exited before it was ready (%s): %s", cmd.ProcessState, tail(logFile))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not ready after 60 s: %s", tail(logFile))
		}
	}
	if cfg.peer == nil {
		tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
		if err != nil {
			return nil, err
		}
		cfg.AdminToken = strings.TrimSpace(string(tok))
	}
	cfg.Duration, cfg.Concurrency, cfg.Devices = pc.Duration, pc.Concurrency, pc.Devices
	cfg.Progress, cfg.Ceiling, cfg.CAPid = pc.Progress, pc.Ceiling, cmd.Process.Pid
	r, err := Run(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r.Kind, r.CA = "peers", describe(ca.name, ca.bin)
	return r, nil
}

// describe names a CA with its module version, read from the binary.
func describe(name, bin string) string {
	v := ""
	if bi, err := buildinfo.ReadFile(bin); err == nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = " " + bi.Main.Version
	}
	switch name {
	case "quorumca":
		return "quorumca" + v + " (dev, 1 node)"
	case "step-ca":
		return "step-ca" + v + " (badger)"
	case "cfssl":
		return "cfssl" + v + " (no database, no auth, plain HTTP)"
	}
	return name + v
}

// stopProcess ends a CA: SIGTERM, then SIGKILL if it has not exited
// within 10 s.
func stopProcess(cmd *exec.Cmd, exited <-chan struct{}) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// tail is the end of a log, for an error message.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	if len(b) == 0 {
		return "(empty log)"
	}
	return strings.TrimSpace(string(b))
}

// Table prints the CAs side by side: rate, latency, CPU per certificate,
// and each against quorumca's.
func (r *PeersResult) Table(w io.Writer) {
	var q *Result
	for _, x := range r.Results {
		if strings.HasPrefix(x.CA, "quorumca") {
			q = x
		}
	}
	if len(r.Results) > 0 {
		x := r.Results[0]
		fmt.Fprintf(w, "peers: enrollment, ECDSA P-256 device keys, closed loop of %d workers over kept-alive HTTP/1.1, %.0fs each\n", x.Concurrency, x.Seconds)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CA\tcerts/s\tp50 ms\tp99 ms\terrors\tCA CPU ms/cert\tharness CPU ms/cert\trate vs quorumca\tCPU vs quorumca\t")
	for _, x := range r.Results {
		rate, cpu := "", ""
		if q != nil && q.CertsPerSecond > 0 {
			rate = fmt.Sprintf("%.2f", x.CertsPerSecond/q.CertsPerSecond)
		}
		if q != nil && q.CACPUms > 0 {
			cpu = fmt.Sprintf("%.2f", x.CACPUms/q.CACPUms)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.1f\t%d\t%.3f\t%.3f\t%s\t%s\t\n",
			x.CA, x.CertsPerSecond, x.P50ms, x.P99ms, x.Errors, x.CACPUms, x.HarnessCPUms, rate, cpu)
	}
	tw.Flush()
	for _, x := range r.Results {
		if len(x.ErrorsByCode) > 0 {
			b, _ := json.Marshal(x.ErrorsByCode)
			fmt.Fprintf(w, "  %s errors: %s\n", x.CA, b)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  FAILED %s\n", e)
	}
}

package bench

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/client"
	"github.com/quorumca/quorumca/scep"
)

// Config of a run against a CA (a node or a load balancer).
type Config struct {
	Addr        string // https://host:port; several, comma-separated, share the devices
	CAFile      string // roots that verify the API's certificate
	AdminToken  string // mints the fleet's tokens
	Provisioner string // enrollment-token provisioner; "" for the default

	Devices     int           // fleet size; each enrolls once (default 10,000)
	Duration    time.Duration // measured phase; ends early when devices run out
	Concurrency int           // closed loop: workers; open loop: most requests in flight
	Rate        float64       // > 0: open loop at this many arrivals per second
	Renew       bool          // enroll every device, then measure renewals
	KeepAlive   bool          // renew over kept-alive connections (bearer JWS); default: a new mTLS connection each
	OCSP        bool          // enroll every device, then measure OCSP requests for its certificate
	KeyType     string        // ec256 (default) or rsa2048
	KeyPool     int           // distinct device keys (default 256)
	Timeout     time.Duration // per request (default 30s)
	Progress    io.Writer     // a line a second; nil: quiet
	Ceiling     float64       // the ceiling measured in the same session, to report against
	CAPid       int           // > 0: report this process's CPU per certificate over the measured phase (Linux)
	Protocol    string        // enrollment: "json" (POST /v1/sign, the default), "est" (simpleenroll) or "scep" (PKCSReq)

	peer *peer // another CA's enrollment API (bench peers); nil: quorumca's
}

// target reads the roots that verify the CA and its addresses.
func (c *Config) target() (*x509.CertPool, []string, error) {
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("%s holds no certificate", c.CAFile)
	}
	var addrs []string
	for _, a := range strings.Split(c.Addr, ",") {
		addrs = append(addrs, strings.TrimSuffix(a, "/"))
	}
	return roots, addrs, nil
}

func (c *Config) defaults() {
	if c.Devices <= 0 {
		c.Devices = 10000
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.KeyPool <= 0 {
		c.KeyPool = 256
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
}

// device is one simulated device. Keys come from a pool made up front (a
// key per device would cost a million key generations for a million
// devices). Each device's enrollment request (its CSR, with its own names,
// and its token) is also made up front: on one machine the harness shares
// the cores with the CA, and CSR signatures made during the run would take
// CPU from the server being measured.
type device struct {
	n      int    // its place in the fleet
	addr   string // the address this device talks to
	token  string
	tokID  string // EST: the Basic user name
	name   string
	key    crypto.Signer
	enroll []byte           // the body of its enrollment (JSON, EST's base64 CSR, a SCEP PKCSReq); dropped once sent
	sent   *scep.Sent       // SCEP: its request, to read the reply with
	cert   *tls.Certificate // after enrollment
	ocsp   []byte           // with Config.OCSP: an OCSP request for cert, after enrollment
}

// fleet holds the devices and the HTTP machinery to drive them.
type fleet struct {
	cfg     Config
	addrs   []string // cfg.Addr's addresses, without a trailing slash
	roots   *x509.CertPool
	devices []*device
	enrollC *http.Client        // kept-alive HTTP/1.1 connections, like many clients
	renewC  *http.Client        // per-request mTLS connections (or kept-alive, bearer)
	ocspC   []*http.Client      // with Config.OCSP: kept-alive clients, each from its own address
	scepRA  []*x509.Certificate // SCEP: GetCACert's answer, the RA's certificate first
}

type ctxKey struct{}

func newFleet(ctx context.Context, cfg Config) (*fleet, error) {
	cfg.defaults()
	roots, addrs, err := cfg.target()
	if err != nil {
		return nil, err
	}
	f := &fleet{cfg: cfg, roots: roots, addrs: addrs}
	base := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	hosts := len(f.addrs)
	f.enrollC = &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{
		TLSClientConfig: base, MaxIdleConnsPerHost: cfg.Concurrency, MaxIdleConns: cfg.Concurrency * hosts,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1: a connection per client
	}}
	renewT := &http.Transport{TLSClientConfig: base, MaxIdleConnsPerHost: cfg.Concurrency, MaxIdleConns: cfg.Concurrency * hosts,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	if !cfg.KeepAlive {
		// Each renewal dials its own connection and shows its device's
		// certificate in the handshake, as a device waking up would.
		renewT.DisableKeepAlives = true
		renewT.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			d, _ := ctx.Value(ctxKey{}).(*device)
			tc := base.Clone()
			if d != nil && d.cert != nil {
				tc.Certificates = []tls.Certificate{*d.cert}
			}
			host, _, _ := net.SplitHostPort(addr)
			tc.ServerName = host
			dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: cfg.Timeout}, Config: tc}
			return dialer.DialContext(ctx, network, addr)
		}
	}
	f.renewC = &http.Client{Timeout: cfg.Timeout, Transport: renewT}
	if cfg.OCSP {
		f.ocspC = ocspClients(cfg, base, f.addrs)
	}
	if cfg.Protocol == "scep" {
		if err := f.scepCACert(ctx); err != nil {
			return nil, err
		}
	}
	if err := f.mint(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// warm opens the kept-alive connections of c before a measured phase, one
// per worker and address (GET /v1/ready): a keep-alive measurement is not
// one of a cold start's handshakes.
func (f *fleet) warm(ctx context.Context, c *http.Client) error {
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for _, addr := range f.addrs {
		for range f.cfg.Concurrency {
			wg.Go(func() {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr+f.readyPath(), nil)
				if err == nil {
					var resp *http.Response
					if resp, err = c.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
				if err != nil {
					select {
					case errs <- fmt.Errorf("warming up connections to %s: %w", addr, err):
					default:
					}
				}
			})
		}
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func (f *fleet) readyPath() string {
	if f.cfg.peer != nil {
		return f.cfg.peer.readyPath
	}
	return "/v1/ready"
}

// mint makes the fleet's devices and their tokens, in batches of the most
// one request may mint. Each batch's names carry a run ID and the batch
// number, so runs and batches never share a name. A peer CA's devices get
// names only here; their tokens, if the peer takes any, are made with the
// enrollment bodies.
func (f *fleet) mint(ctx context.Context) error {
	keys := make([]crypto.Signer, f.cfg.KeyPool)
	for i := range keys {
		k, err := NewKey(f.cfg.KeyType)
		if err != nil {
			return err
		}
		keys[i] = k
	}
	run := fmt.Sprintf("r%x", time.Now().UnixNano()&0xffffffffff)
	f.devices = make([]*device, f.cfg.Devices)
	if f.cfg.peer != nil {
		for i := range f.devices {
			f.devices[i] = &device{n: i, addr: f.addrs[i%len(f.addrs)], name: fmt.Sprintf("d%d.%s.bench.example", i, run), key: keys[i%len(keys)]}
		}
		return f.prepare(ctx)
	}
	admin, err := client.New(client.Config{Addr: f.addrs[0], RootCAs: f.roots, AdminToken: f.cfg.AdminToken, Timeout: 5 * time.Minute})
	if err != nil {
		return err
	}
	defer admin.CloseIdleConnections()
	batches := (f.cfg.Devices + authority.MaxTokenBatch - 1) / authority.MaxTokenBatch
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for b := range batches {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			lo := b * authority.MaxTokenBatch
			n := min(authority.MaxTokenBatch, f.cfg.Devices-lo)
			pattern := fmt.Sprintf("d{n}.b%d.%s.bench.example", b, run)
			toks, err := admin.MintTokens(ctx, client.TokenRequest{SANs: []string{pattern}, Count: n, TTL: "24h", Provisioner: f.cfg.Provisioner})
			if err == nil && len(toks) != n {
				err = fmt.Errorf("minted %d tokens, want %d", len(toks), n)
			}
			if err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, fmt.Errorf("mint tokens: %w", err))
				mu.Unlock()
				return
			}
			for i, t := range toks {
				f.devices[lo+i] = &device{n: lo + i, addr: f.addrs[(lo+i)%len(f.addrs)], token: t.Token, tokID: t.ID, name: t.SANs[0], key: keys[(lo+i)%len(keys)]}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return f.prepare(ctx)
}

// prepare makes every device's enrollment body, on all cores.
func (f *fleet) prepare(ctx context.Context) error {
	var next atomic.Int64
	errs := make(chan error, runtime.GOMAXPROCS(0))
	for range cap(errs) {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(f.devices) || ctx.Err() != nil {
					errs <- ctx.Err()
					return
				}
				d := f.devices[i]
				der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: d.name}, DNSNames: []string{d.name}}, d.key)
				if err != nil {
					errs <- fmt.Errorf("csr: %w", err)
					return
				}
				csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
				if f.cfg.peer != nil {
					if d.enroll, err = f.cfg.peer.body(d.addr, d.name, csr); err != nil {
						errs <- fmt.Errorf("%s enrollment request: %w", f.cfg.peer.name, err)
						return
					}
					continue
				}
				if f.cfg.Protocol == "est" {
					d.enroll = []byte(base64.StdEncoding.EncodeToString(der))
					continue
				}
				if f.cfg.Protocol == "scep" {
					if err := f.prepareSCEP(d); err != nil {
						errs <- fmt.Errorf("scep request: %w", err)
						return
					}
					continue
				}
				d.enroll, _ = json.Marshal(map[string]string{"csr": string(csr), "token": d.token})
			}
		}()
	}
	var err error
	for range cap(errs) {
		err = cmpErr(err, <-errs)
	}
	return err
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// signReply is an enrollment's answer: quorumca's, step-ca's (crt) or
// CFSSL's (result.certificate).
type signReply struct {
	Certificate string   `json:"certificate"`
	Chain       []string `json:"chain"`
	Crt         string   `json:"crt"`
	Result      *struct {
		Certificate string `json:"certificate"`
	} `json:"result"`
}

// enroll trades d's token for its certificate. It returns "" or the
// failure's code.
func (f *fleet) enroll(ctx context.Context, d *device) string {
	switch f.cfg.Protocol {
	case "est":
		return f.enrollEST(ctx, d)
	case "scep":
		return f.enrollSCEP(ctx, d)
	}
	path := "/v1/sign"
	if f.cfg.peer != nil {
		path = f.cfg.peer.signPath
	}
	var out signReply
	if code := f.post(ctx, f.enrollC, d.addr+path, "", d.enroll, &out); code != "" {
		return code
	}
	d.enroll = nil
	if code := d.adopt(&out); code != "" || !f.cfg.OCSP {
		return code
	}
	return d.makeOCSPRequest(&out)
}

// renew trades d's certificate for its successor: over a new mTLS
// connection, or with a bearer JWS over a kept-alive one.
func (f *fleet) renew(ctx context.Context, d *device) string {
	if d.cert == nil {
		return "not_enrolled"
	}
	bearer := ""
	if f.cfg.KeepAlive {
		now := time.Now()
		var err error
		bearer, err = authority.SignJWT(d.key, "", [][]byte{d.cert.Certificate[0]}, map[string]any{
			"aud": d.addr + "/v1/renew", "jti": randomHex(12),
			"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		})
		if err != nil {
			return "jws"
		}
	}
	var out signReply
	if code := f.post(context.WithValue(ctx, ctxKey{}, d), f.renewC, d.addr+"/v1/renew", bearer, nil, &out); code != "" {
		return code
	}
	return d.adopt(&out)
}

func (d *device) adopt(s *signReply) string {
	cert := s.Certificate
	if s.Crt != "" {
		cert = s.Crt
	} else if s.Result != nil {
		cert = s.Result.Certificate
	}
	block, _ := pem.Decode([]byte(cert))
	if block == nil {
		return "bad_reply"
	}
	d.cert = &tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: d.key}
	return ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// post sends one request and decodes a 2xx reply; it returns "" or a code.
func (f *fleet) post(ctx context.Context, c *http.Client, url, bearer string, body []byte, out any) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "request"
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	data, code := exchange(c, req)
	if code != "" {
		return code
	}
	if json.Unmarshal(data, out) != nil {
		return "bad_reply"
	}
	return ""
}

// exchange sends req and reads a 2xx answer's body, or returns the code
// of the failure.
func exchange(c *http.Client, req *http.Request) ([]byte, string) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, TransportCode(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, TransportCode(err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, refusalCode(resp.StatusCode, data)
	}
	return data, ""
}

// refusalCode is the code of a refusal: the JSON error's, CFSSL's, or the
// status.
func refusalCode(status int, data []byte) string {
	var e struct {
		Error  struct{ Code string }
		Errors []struct{ Code int } // CFSSL's
	}
	if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
		return e.Error.Code
	}
	if len(e.Errors) > 0 && e.Errors[0].Code != 0 {
		return fmt.Sprintf("cfssl_%d", e.Errors[0].Code)
	}
	return fmt.Sprintf("http_%d", status)
}

// enrollEST trades d's token for its certificate over EST (RFC 7030
// simpleenroll): the token's ID and secret as Basic credentials, the
// reply a base64 certs-only PKCS#7.
func (f *fleet) enrollEST(ctx context.Context, d *device) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.addr+"/.well-known/est/simpleenroll", bytes.NewReader(d.enroll))
	if err != nil {
		return "request"
	}
	req.Header.Set("Content-Type", "application/pkcs10")
	req.SetBasicAuth(d.tokID, d.token)
	data, code := exchange(f.enrollC, req)
	if code != "" {
		return code
	}
	cert, err := client.ESTCertificate(data)
	if err != nil {
		return "bad_reply"
	}
	d.enroll = nil
	d.cert = &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: d.key}
	return ""
}

// TransportCode names a failure that got no HTTP answer: timeout, refused,
// reset, eof, tls, canceled, or transport.
func TransportCode(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case strings.Contains(err.Error(), "tls:"), strings.Contains(err.Error(), "x509:"):
		return "tls"
	}
	return "transport"
}

// handshakeRate measures, for d, new TLS connections per second that each
// carry one trivial request (GET /v1/health, so the server finishes its
// side of the handshake too): what a new connection per renewal is
// bounded by.
func (f *fleet) handshakeRate(ctx context.Context, d time.Duration, workers int, cert *tls.Certificate) float64 {
	u := strings.TrimPrefix(f.addrs[0], "https://")
	host, _, _ := net.SplitHostPort(u)
	tc := &tls.Config{RootCAs: f.roots, ServerName: host, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	n := 0
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				conn, err := (&tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: tc}).DialContext(ctx, "tcp", u)
				if err != nil {
					continue
				}
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = io.WriteString(conn, "GET /v1/health HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
				if err == nil {
					_, err = io.Copy(io.Discard, conn)
				}
				conn.Close()
				if err != nil {
					continue
				}
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

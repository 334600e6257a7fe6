package chaos

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/bench"
	"github.com/quorumca/quorumca/client"
	"github.com/quorumca/quorumca/scep"
)

// serviceName is the name clients use for the cluster (the balancer's);
// every node's certificate carries it.
const serviceName = "ca.chaos.test"

// workload is a fleet of simulated devices plus an admin, all talking to
// the cluster through HAProxy. Devices enroll with single-use tokens,
// renew over mTLS, and re-enroll with a fresh token when revoked; the admin
// revokes devices' certificates; a replayer sends used tokens again.
type workload struct {
	cfg   Config
	base  string // https://<HAProxy>
	hist  *history
	admin string

	devC   *http.Client // a new TLS connection per request, as devices waking up
	adminC *http.Client // kept-alive connections

	// SCEP: GetCACert's answer (the RA's certificate first), and the RSA
	// key and self-signed certificate SCEP devices sign their requests
	// with: replies are encrypted to it, while their certificates are for
	// their own P-256 keys.
	scepRA   []*x509.Certificate
	scepKey  *rsa.PrivateKey
	scepSelf *x509.Certificate
	factory  *manufacturer // x5c devices' maker (x5c.go)

	mu       sync.Mutex
	spare    []*token
	enrolled []*token // tokens whose enrollment was acknowledged
	devices  []*device
}

type token struct {
	id, secret string
	sans       []string
	// factory: an x5c device's factory certificate, its credential
	// instead of a secret (id "device:<device ID>").
	factory *tls.Certificate
	// Set once an enrollment with it is acknowledged.
	key *ecdsa.PrivateKey
	der []byte
}

type device struct {
	name string
	via  string // how it enrolls: "" (the JSON API), "est" (and renews so), "scep" or "x5c" (a factory certificate)
	tok  *token
	key  *ecdsa.PrivateKey

	mu     sync.Mutex
	cert   *tls.Certificate // the current acknowledged certificate
	serial string
}

type certKey struct{}

func newWorkload(cfg Config, haproxyAddr string, roots *x509.CertPool, admin string, hist *history) *workload {
	base := &tls.Config{RootCAs: roots, ServerName: serviceName, MinVersion: tls.VersionTLS12}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		tc := base.Clone()
		if c, ok := ctx.Value(certKey{}).(*tls.Certificate); ok && c != nil {
			tc.Certificates = []tls.Certificate{*c}
		}
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: cfg.RequestTimeout}, Config: tc}
		return d.DialContext(ctx, network, addr)
	}
	w := &workload{cfg: cfg, base: "https://" + haproxyAddr, hist: hist, admin: admin}
	w.devC = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialTLSContext: dial,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	w.adminC = &http.Client{Transport: &http.Transport{TLSClientConfig: base, MaxIdleConnsPerHost: 8,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	return w
}

// mint makes n tokens up front, in batches, so the admin API is out of
// the fault path.
func (w *workload) mint(ctx context.Context, n int, run string) error {
	hc := &http.Client{Timeout: time.Minute, Transport: w.adminC.Transport}
	for lo := 0; lo < n; lo += authority.MaxTokenBatch {
		count := min(authority.MaxTokenBatch, n-lo)
		body, _ := json.Marshal(client.TokenRequest{SANs: []string{fmt.Sprintf("d{n}.b%d.%s.devices.chaos.test", lo, run)},
			Count: count, TTL: "24h", Provisioner: "devices"})
		req, _ := http.NewRequestWithContext(ctx, "POST", w.base+"/v1/admin/tokens", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+w.admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("mint tokens: %w", err)
		}
		var out struct{ Tokens []client.Token }
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
			return fmt.Errorf("mint tokens: %s: %s", resp.Status, data)
		}
		if err := json.Unmarshal(data, &out); err != nil || len(out.Tokens) != count {
			return fmt.Errorf("mint tokens: want %d, got %d (%v)", count, len(out.Tokens), err)
		}
		for _, t := range out.Tokens {
			w.spare = append(w.spare, &token{id: t.ID, secret: t.Token, sans: t.SANs})
		}
	}
	if err := w.scepSetUp(ctx); err != nil {
		return err
	}
	return w.x5cSetUp(ctx, n, run)
}

// nextCredential is a new token for d, or a new factory identity for a
// factory device; nil when none is left.
func (w *workload) nextCredential(via string) *token {
	if via == "x5c" {
		return w.takeDevice()
	}
	return w.takeToken()
}

// takeToken hands out a spare token, or nil when none is left.
func (w *workload) takeToken() *token {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.spare) == 0 {
		return nil
	}
	t := w.spare[len(w.spare)-1]
	w.spare = w.spare[:len(w.spare)-1]
	return t
}

// run drives the fleet until stop closes, then waits for requests in
// flight (each bounded by the request timeout).
func (w *workload) run(stop <-chan struct{}) {
	var wg sync.WaitGroup
	for i := range w.cfg.Devices {
		// A third of the devices speak EST, a sixth SCEP, a sixth enroll
		// by a factory certificate: a token or a listed device yields one
		// certificate whichever protocol spends it.
		via := [6]string{"", "scep", "est", "x5c", "", "est"}[i%6]
		tok := w.nextCredential(via)
		if tok == nil {
			break
		}
		d := &device{name: fmt.Sprintf("d%d", i+1), via: via, tok: tok, key: newKey()}
		w.mu.Lock()
		w.devices = append(w.devices, d)
		w.mu.Unlock()
		wg.Add(1)
		go func() { defer wg.Done(); w.deviceLoop(d, stop) }()
	}
	wg.Add(2)
	go func() { defer wg.Done(); w.every(stop, w.cfg.RevokeEvery, w.revokeOne) }()
	go func() {
		defer wg.Done()
		same := false
		w.every(stop, w.cfg.ReplayEvery, func() { w.replayOne(same); same = !same })
	}()
	wg.Wait()
}

// pause waits about d (±50%), or until stop; it reports false on stop.
func pause(stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d/2 + rand.N(d+1))
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

func (w *workload) every(stop <-chan struct{}, d time.Duration, fn func()) {
	for pause(stop, d) {
		fn()
	}
}

func (w *workload) deviceLoop(d *device, stop <-chan struct{}) {
	// Devices start spread over one think time, not all at once.
	if !pause(stop, w.cfg.Think) {
		return
	}
	for {
		d.mu.Lock()
		enrolled := d.cert != nil
		d.mu.Unlock()
		if !enrolled {
			if d.tok == nil {
				return // no tokens left: the device retires
			}
			w.enroll(d)
		} else {
			w.renew(d)
		}
		if !pause(stop, w.cfg.Think) {
			return
		}
	}
}

// reply is what came back for one request.
type reply struct {
	status int
	code   string
	msg    string
	body   []byte
	err    error
	sent   bool // the request was written: it may have reached a node
}

// outcome classifies a reply: 2xx ok; 4xx and 429, and errors before the
// request was written, fail; everything else is unknown, EST's 202 ("not
// now", a 503 of the JSON API) included.
func (r reply) outcome() string {
	switch {
	case r.err == nil && r.status == http.StatusAccepted:
		return Unknown
	case r.err == nil && r.status/100 == 2:
		return OK
	case r.err == nil && (r.status/100 == 4):
		return Fail
	case r.err != nil && !r.sent:
		return Fail
	}
	return Unknown
}

// post sends one JSON request with no retries. cert, if set, is
// presented in the TLS handshake.
func (w *workload) post(c *http.Client, path, bearer string, body any, cert *tls.Certificate) reply {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	return w.send(c, path, rd, cert, func(req *http.Request) {
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
	})
}

// estPost sends an EST request: the CSR as base64 DER, Basic credentials
// if user is set. An issued certificate comes back as a certs-only PKCS#7;
// it is rewritten as the JSON API's reply, which the rest reads.
func (w *workload) estPost(path string, csr string, user, pass string, cert *tls.Certificate) reply {
	blk, _ := pem.Decode([]byte(csr))
	r := w.send(w.devC, path, strings.NewReader(base64.StdEncoding.EncodeToString(blk.Bytes)), cert, func(req *http.Request) {
		req.Header.Set("Content-Type", "application/pkcs10")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
	})
	if r.err == nil && r.status == http.StatusOK {
		c, err := client.ESTCertificate(r.body)
		if err != nil {
			r.err, r.code, r.msg = fmt.Errorf("EST reply: %w", err), "bad_reply", err.Error()
			return r
		}
		r.body, _ = json.Marshal(signed{Serial: authority.SerialHex(c.SerialNumber),
			Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))})
	}
	return r
}

// send POSTs body to path with no retries, headers set by prepare and
// cert, if set, presented in the TLS handshake. The reply says whether
// the request was written, so an error after that is an unknown outcome.
func (w *workload) send(c *http.Client, path string, body io.Reader, cert *tls.Certificate, prepare func(*http.Request)) reply {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.RequestTimeout)
	defer cancel()
	var r reply
	ctx = httptrace.WithClientTrace(context.WithValue(ctx, certKey{}, cert), &httptrace.ClientTrace{
		WroteHeaders: func() { r.sent = true },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.base+path, body)
	if err != nil {
		r.err = err
		return r
	}
	prepare(req)
	resp, err := c.Do(req)
	if err != nil {
		r.err, r.code, r.msg = err, bench.TransportCode(err), err.Error()
		return r
	}
	defer resp.Body.Close()
	r.status = resp.StatusCode
	if r.body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20)); err != nil {
		r.err, r.code, r.msg = err, bench.TransportCode(err), err.Error()
		return r
	}
	if r.status/100 != 2 {
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(r.body, &e) == nil && e.Error.Code != "" {
			r.code, r.msg = e.Error.Code, e.Error.Message
		} else {
			r.code = fmt.Sprintf("http_%d", r.status)
		}
	}
	return r
}

// record completes op from r and adds it to the history.
func (w *workload) record(op Op, start time.Time, r reply) Op {
	op.Start, op.End = w.hist.since(start), w.hist.since(time.Now())
	op.Outcome, op.Status, op.Code = r.outcome(), r.status, r.code
	if op.Outcome != OK {
		op.Error = r.msg
	}
	return w.hist.add(op)
}

type signed struct {
	Serial      string `json:"serial"`
	Certificate string `json:"certificate"`
}

// issued parses a sign or renew reply: the certificate's DER, and its
// serial as the certificate says it.
func issued(r *reply) ([]byte, string, error) {
	var s signed
	if err := json.Unmarshal(r.body, &s); err != nil {
		return nil, "", err
	}
	blk, _ := pem.Decode([]byte(s.Certificate))
	if blk == nil {
		return nil, "", errors.New("no certificate in the reply")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, "", err
	}
	return blk.Bytes, authority.SerialHex(c.SerialNumber), nil
}

// acknowledged fills op from an ok sign or renew reply; a reply that does
// not hold a certificate is not an acknowledgement.
func acknowledged(r *reply, op *Op) []byte {
	if r.outcome() != OK {
		return nil
	}
	der, serial, err := issued(r)
	if err != nil {
		r.status, r.err, r.code, r.msg = 0, err, "bad_reply", err.Error()
		r.sent = true
		return nil
	}
	op.Serial, op.Cert = serial, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return der
}

func (w *workload) enroll(d *device) {
	start := time.Now()
	var r reply
	op := Op{Kind: OpEnroll, Device: d.name, TokenID: d.tok.id}
	switch d.via {
	case "est":
		r, op.Via = w.estPost("/.well-known/est/devices/simpleenroll", csrPEM(d.key, d.tok.sans), d.tok.id, d.tok.secret, nil), "est"
	case "scep":
		r, op.Via = w.scepEnroll(d), "scep"
	case "x5c":
		r, op.Via = w.x5cSign(d.tok, d.key), "x5c"
	default:
		r = w.post(w.devC, "/v1/sign", "", map[string]string{"csr": csrPEM(d.key, d.tok.sans), "token": d.tok.secret}, nil)
	}
	der := acknowledged(&r, &op)
	w.record(op, start, r)
	switch r.outcome() {
	case OK:
		d.mu.Lock()
		d.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: d.key}
		d.serial = op.Serial
		d.mu.Unlock()
		w.mu.Lock()
		if d.tok.der == nil {
			d.tok.key, d.tok.der = d.key, der
			w.enrolled = append(w.enrolled, d.tok)
		}
		w.mu.Unlock()
	case Fail:
		if r.err == nil {
			// Refused: this token is spent for this device; take another.
			d.tok, d.key = w.nextCredential(d.via), newKey()
		}
	}
	// Unknown: the device asks again with the same token and key, and
	// gets the certificate if the first request was committed.
}

func (w *workload) renew(d *device) {
	d.mu.Lock()
	cert, serial := d.cert, d.serial
	d.mu.Unlock()
	start := time.Now()
	var r reply
	op := Op{Kind: OpRenew, Device: d.name, Renews: serial}
	if d.via == "est" {
		// simplereenroll wants a CSR: the same names and key. (SCEP
		// devices renew over the JSON API: a RenewalReq is signed with the
		// certificate's key, and SCEP replies need an RSA one.)
		leaf, _ := x509.ParseCertificate(cert.Certificate[0])
		r, op.Via = w.estPost("/.well-known/est/devices/simplereenroll", csrPEM(d.key, leaf.DNSNames), "", "", cert), "est"
	} else {
		r = w.post(w.devC, "/v1/renew", "", nil, cert)
	}
	der := acknowledged(&r, &op)
	w.record(op, start, r)
	switch {
	case r.outcome() == OK:
		d.mu.Lock()
		d.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: d.key}
		d.serial = op.Serial
		d.mu.Unlock()
	case r.outcome() == Fail && r.err == nil && r.status != http.StatusTooManyRequests:
		// Revoked (or unknown to the CA): enroll again with a new token.
		// (Over a limit, the device keeps its certificate and asks later.)
		d.mu.Lock()
		d.cert, d.serial = nil, ""
		d.mu.Unlock()
		d.tok, d.key = w.nextCredential(d.via), newKey()
	}
}

// revokeOne has the admin revoke a random device's current certificate.
func (w *workload) revokeOne() {
	w.mu.Lock()
	var serial string
	if n := len(w.devices); n > 0 {
		for range 8 {
			d := w.devices[rand.N(n)]
			d.mu.Lock()
			serial = d.serial
			d.mu.Unlock()
			if serial != "" {
				break
			}
		}
	}
	w.mu.Unlock()
	if serial == "" {
		return
	}
	start := time.Now()
	r := w.post(w.adminC, "/v1/admin/certs/"+serial+"/revoke", w.admin, map[string]string{"reason": "keyCompromise"}, nil)
	w.record(Op{Kind: OpRevoke, Serial: serial}, start, r)
}

// replayOne sends a used token again: with a new key (it must be refused)
// or with the key it enrolled (the same certificate comes back, or a
// refusal if that certificate has been revoked).
func (w *workload) replayOne(sameKey bool) {
	w.mu.Lock()
	var t *token
	if n := len(w.enrolled); n > 0 {
		t = w.enrolled[rand.N(n)]
	}
	w.mu.Unlock()
	if t == nil {
		return
	}
	kind, key := OpReplay, newKey()
	if sameKey {
		kind, key = OpReplaySame, t.key
	}
	start := time.Now()
	var r reply
	if t.factory != nil {
		r = w.x5cSign(t, key)
	} else {
		r = w.post(w.devC, "/v1/sign", "", map[string]string{"csr": csrPEM(key, t.sans), "token": t.secret}, nil)
	}
	op := Op{Kind: kind, TokenID: t.id}
	acknowledged(&r, &op)
	w.record(op, start, r)
}

func newKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func csrPEM(key crypto.Signer, sans []string) string {
	der, err := x509.CreateCertificateRequest(crand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: sans[0]}, DNSNames: sans}, key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// scepSetUp fetches the RA's certificate (before the faults, like the
// tokens) and makes the SCEP devices' signing key.
func (w *workload) scepSetUp(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.base+"/scep/devices?operation=GetCACert", nil)
	resp, err := w.adminC.Do(req)
	if err != nil {
		return fmt.Errorf("scep GetCACert: %w", err)
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scep GetCACert: %s: %s", resp.Status, data)
	}
	if w.scepRA, err = scep.ParseCACerts(data); err != nil {
		return err
	}
	if w.scepKey, err = rsa.GenerateKey(crand.Reader, 2048); err != nil {
		return err
	}
	w.scepSelf, err = scep.SelfSigned(w.scepKey, "chaos scep device")
	return err
}

// scepEnroll sends a PKCSReq with the device's token as the challenge
// password. A CertRep that says failure is a refusal (a 4xx of the JSON
// API, its code from failInfoText); a success is read as a sign reply.
func (w *workload) scepEnroll(d *device) reply {
	csr, err := scep.CSRWithChallenge(&x509.CertificateRequest{Subject: pkix.Name{CommonName: d.tok.sans[0]}, DNSNames: d.tok.sans}, d.key, d.tok.secret)
	if err != nil {
		return reply{err: err, code: "request", msg: err.Error()}
	}
	sent, err := scep.NewRequest(scep.PKCSReq, csr, w.scepRA[0], w.scepSelf, w.scepKey, "chaos-"+d.name+"-"+d.tok.id)
	if err != nil {
		return reply{err: err, code: "request", msg: err.Error()}
	}
	r := w.send(w.devC, "/scep/devices?operation=PKIOperation", bytes.NewReader(sent.Message), nil, func(req *http.Request) {
		req.Header.Set("Content-Type", "application/x-pki-message")
	})
	if r.err != nil || r.status != http.StatusOK {
		return r
	}
	out, err := sent.ReadReply(r.body, w.scepRA)
	switch {
	case err != nil:
		r.err, r.code, r.msg = fmt.Errorf("SCEP reply: %w", err), "bad_reply", err.Error()
	case out.FailInfo != "":
		code, _, _ := strings.Cut(out.FailText, ":")
		r.status, r.code, r.msg = http.StatusBadRequest, code, out.FailText
	case len(out.Certs) == 0:
		r.err, r.code, r.msg = errors.New("SCEP reply: a success without a certificate"), "bad_reply", "no certificate"
	default:
		c, err := x509.ParseCertificate(out.Certs[0])
		if err != nil {
			r.err, r.code, r.msg = err, "bad_reply", err.Error()
			return r
		}
		r.body, _ = json.Marshal(signed{Serial: authority.SerialHex(c.SerialNumber),
			Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))})
	}
	return r
}

package chaos

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/bench"
	"github.com/quorumca/quorumca/client"
)

// ACME clients under the same nemesis: each an account that orders a
// certificate for the host's address on the cluster network, over and
// over, through HAProxy with a new connection per request (so a nonce
// minted by one node is redeemed at another), and answers http-01 on the
// host. A replayer sends a signed request that was accepted once again:
// its nonce must be refused. The checker wants one certificate per order
// at most, and no nonce accepted twice.

// acmeDirectory is the URL ACME clients start from: the service name,
// which every node takes as a public URL, reached through HAProxy.
const acmeDirectory = "https://" + serviceName + "/acme/acme/directory"

type acmeWorkload struct {
	w       *workload
	host    string // the host's address on the cluster network
	hc      *http.Client
	h01     client.HTTP01
	srv     *http.Server
	clients []*acmeAccount

	mu   sync.Mutex
	last *sentRequest // a signed request accepted a moment ago
}

type acmeAccount struct {
	name    string
	c       *client.ACME
	account string // its requester name in certificate records
}

type sentRequest struct {
	url  string
	body []byte
}

// newACMEWorkload answers http-01 at host and makes n accounts, through
// HAProxy at lb, before any fault.
func newACMEWorkload(ctx context.Context, w *workload, lb, host string, roots *x509.CertPool, n int) (*acmeWorkload, error) {
	a := &acmeWorkload{w: w, host: host}
	base := &tls.Config{RootCAs: roots, ServerName: serviceName, MinVersion: tls.VersionTLS12}
	a.hc = &http.Client{Timeout: w.cfg.RequestTimeout, Transport: &http.Transport{
		DisableKeepAlives: true, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		// Every URL names the service; HAProxy is where it is.
		DialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: w.cfg.RequestTimeout}, Config: base}
			return d.DialContext(ctx, network, lb)
		},
	}}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(acmeHTTP01Port)))
	if err != nil {
		return nil, fmt.Errorf("chaos: http-01 listener: %w", err)
	}
	a.srv = &http.Server{Handler: &a.h01, ReadHeaderTimeout: 5 * time.Second}
	go a.srv.Serve(ln)
	for i := range n {
		var c *client.ACME
		err := errors.New("not tried")
		for try := 0; err != nil && try < 10 && ctx.Err() == nil; try++ {
			if c, err = client.NewACME(ctx, a.hc, acmeDirectory); err == nil {
				err = c.Register(ctx)
			}
			if err != nil {
				time.Sleep(time.Second)
			}
		}
		if err != nil {
			a.srv.Close()
			return nil, fmt.Errorf("chaos: ACME account %d: %w", i+1, err)
		}
		acc := &acmeAccount{name: fmt.Sprintf("acme%d", i+1), c: c, account: requesterOf(c)}
		c.Sent = a.sent
		a.clients = append(a.clients, acc)
	}
	return a, nil
}

// requesterOf is the name certificate records give the account:
// acme:<provisioner>/<account id>.
func requesterOf(c *client.ACME) string {
	kid := c.AccountURL()
	return authority.ACMERequester("acme", kid[strings.LastIndex(kid, "/")+1:])
}

// sent keeps the last signed request that was accepted, for the replayer.
func (a *acmeWorkload) sent(url string, body []byte, status int) {
	if status/100 != 2 {
		return
	}
	a.mu.Lock()
	a.last = &sentRequest{url: url, body: bytes.Clone(body)}
	a.mu.Unlock()
}

func (a *acmeWorkload) run(stop <-chan struct{}) {
	var wg sync.WaitGroup
	for _, acc := range a.clients {
		wg.Go(func() {
			for pause(stop, a.w.cfg.Think) {
				a.order(acc)
			}
		})
	}
	wg.Go(func() { a.w.every(stop, a.w.cfg.ReplayEvery, a.replay) })
	wg.Wait()
	a.srv.Close()
}

// order runs one whole order and records it as one op.
func (a *acmeWorkload) order(acc *acmeAccount) {
	key := newKey()
	csr, err := x509.CreateCertificateRequest(crand.Reader, &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP(a.host)}}, key)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*a.w.cfg.RequestTimeout)
	defer cancel()
	start := time.Now()
	chain, err := acc.c.Obtain(ctx, [][2]string{{"ip", a.host}}, csr, &a.h01)
	op := Op{Kind: OpACMEOrder, Device: acc.name, Account: acc.account}
	r := acmeReply(err)
	if err == nil {
		if blk, _ := pem.Decode(chain); blk != nil {
			if c, perr := x509.ParseCertificate(blk.Bytes); perr == nil {
				op.Serial, op.Cert = authority.SerialHex(c.SerialNumber), string(pem.EncodeToMemory(blk))
			}
		}
		if op.Serial == "" {
			r = reply{sent: true, err: errors.New("no certificate in the chain"), code: "bad_reply"}
		}
	}
	a.w.record(op, start, r)
}

// acmeReply classifies an order's error as the history does a request's:
// a problem document with a 4xx fails; anything else may have taken
// effect.
func acmeReply(err error) reply {
	var p *client.ACMEError
	switch {
	case err == nil:
		return reply{status: http.StatusOK}
	case errors.As(err, &p):
		return reply{status: p.Status, code: strings.TrimPrefix(p.Type, "urn:ietf:params:acme:error:"), msg: p.Detail}
	}
	return reply{err: err, sent: true, code: bench.TransportCode(err), msg: err.Error()}
}

// replay sends the last accepted signed request again, byte for byte.
func (a *acmeWorkload) replay() {
	a.mu.Lock()
	last := a.last
	a.mu.Unlock()
	if last == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.w.cfg.RequestTimeout)
	defer cancel()
	start := time.Now()
	var r reply
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, last.url, bytes.NewReader(last.body))
	if err == nil {
		req.Header.Set("Content-Type", "application/jose+json")
		var resp *http.Response
		if resp, err = a.hc.Do(req); err == nil {
			resp.Body.Close()
			r.status = resp.StatusCode
			if r.status/100 != 2 {
				r.code = fmt.Sprintf("http_%d", r.status)
			}
		}
	}
	if err != nil {
		r.err, r.sent, r.code, r.msg = err, true, bench.TransportCode(err), err.Error()
	}
	a.w.record(Op{Kind: OpACMEReplay, Error: last.url}, start, r)
}

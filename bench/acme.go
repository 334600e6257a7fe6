package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/quorumca/quorumca/client"
)

// ACMEConfig is a run of ACME orders: each a whole RFC 8555 exchange
// (new order, authorization, challenge, validation by the CA, finalize,
// download; about eight requests), with http-01 answered by the harness.
type ACMEConfig struct {
	Config
	// Provisioner is an acme provisioner; default "bench-acme", made if
	// missing (IP identifiers in 127.0.0.0/8).
	Provisioner string
	// HTTP01 is where the harness answers http-01 (127.0.0.1:port): the
	// port the CA validates on (its acme.http01_port).
	HTTP01 string
}

// ACME measures orders per second: accounts are made first (one per
// worker), then each worker orders, for 127.0.0.1, until the phase ends.
func ACME(ctx context.Context, cfg ACMEConfig) (*Result, error) {
	cfg.defaults()
	if cfg.Provisioner == "" {
		cfg.Provisioner = "bench-acme"
	}
	host, _, err := net.SplitHostPort(cfg.HTTP01)
	if err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
		return nil, fmt.Errorf("bench acme: -http01 %q must be a loopback address and port", cfg.HTTP01)
	}
	roots, addrs, err := cfg.target()
	if err != nil {
		return nil, err
	}
	if err := ensureACMEProvisioner(ctx, cfg, roots, addrs[0]); err != nil {
		return nil, err
	}

	// The harness's http-01 responder.
	h := &client.HTTP01{}
	ln, err := net.Listen("tcp", cfg.HTTP01)
	if err != nil {
		return nil, fmt.Errorf("bench acme: http-01 listener: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	hc := &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: cfg.Concurrency, MaxIdleConns: cfg.Concurrency * len(addrs),
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1, as most clients
	}}
	accounts := make([]*client.ACME, cfg.Concurrency)
	var wg sync.WaitGroup
	errs := make([]error, len(accounts))
	for i := range accounts {
		wg.Go(func() {
			dir := addrs[i%len(addrs)] + "/acme/" + cfg.Provisioner + "/directory"
			a, err := client.NewACME(ctx, hc, dir)
			if err == nil {
				err = a.Register(ctx)
			}
			accounts[i], errs[i] = a, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bench acme: accounts: %w", err)
	}
	// CSRs made up front, one per pooled key: the harness must not take
	// the CA's CPU for signatures during the run.
	csrs := make([][]byte, cfg.KeyPool)
	for i := range csrs {
		k, err := NewKey(cfg.KeyType)
		if err != nil {
			return nil, err
		}
		if csrs[i], err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP(host)}}, k); err != nil {
			return nil, err
		}
	}

	res := &Result{Kind: "acme", Operation: "acme-order", Addr: cfg.Addr, Concurrency: cfg.Concurrency, Mode: "closed",
		KeyType: orDefault(cfg.KeyType, "ec256"), Machine: thisMachine(), CeilingPerSec: cfg.Ceiling}
	cpu := markCPU(cfg.CAPid)
	start := time.Now()
	res.Started = start
	rec := newRecorder(start)
	stop := make(chan struct{})
	go rec.progress(cfg.Progress, "acme", stop)
	deadline := start.Add(cfg.Duration)
	ids := [][2]string{{"ip", host}}
	for w := range cfg.Concurrency {
		wg.Go(func() {
			for n := w; ctx.Err() == nil && time.Now().Before(deadline); n += cfg.Concurrency {
				t := time.Now()
				_, err := accounts[w].Obtain(ctx, ids, csrs[n%len(csrs)], h)
				rec.add(t, time.Now(), acmeCode(err))
			}
		})
	}
	wg.Wait()
	close(stop)
	rec.result(res, time.Since(start))
	cpu.report(cfg.CAPid, res)
	res.Devices = res.Requests
	return res, nil
}

// acmeCode is an order's outcome for the recorder: "" or the problem type.
func acmeCode(err error) string {
	var p *client.ACMEError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &p):
		return strings.TrimPrefix(p.Type, "urn:ietf:params:acme:error:")
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "transport"
}

// ensureACMEProvisioner makes the run's provisioner when it is missing.
func ensureACMEProvisioner(ctx context.Context, cfg ACMEConfig, roots *x509.CertPool, addr string) error {
	c, err := client.New(client.Config{Addr: addr, RootCAs: roots, AdminToken: cfg.AdminToken})
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	if _, err := c.Provisioner(ctx, cfg.Provisioner); err == nil {
		return nil
	}
	_, err = c.CreateProvisioner(ctx, client.Provisioner{Name: cfg.Provisioner, Kind: "acme", Authority: "default",
		Policy: client.Policy{IP: []string{"127.0.0.0/8"}, DefaultTTL: "24h", MaxTTL: "720h", EKU: "server"}})
	if err != nil {
		return fmt.Errorf("bench acme: provisioner %s: %w", cfg.Provisioner, err)
	}
	return nil
}

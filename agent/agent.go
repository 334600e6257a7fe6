// Package agent is the device side of quorumca: it enrolls once with a
// single-use token, then keeps its certificate renewed over mTLS with no
// maintenance. See DESIGN.md.
package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/quorumca/quorumca/client"
	"github.com/quorumca/quorumca/internal/atomicfile"
	"github.com/quorumca/quorumca/internal/backoff"
)

// Config of an agent. Paths are required unless marked optional.
type Config struct {
	BundleFile string
	CertFile   string // the certificate, then its issuing chain (PEM)
	KeyFile    string // written with mode 0600
	ChainFile  string // optional: the issuing chain alone
	RootsFile  string // the trust bundle, refreshed from /v1/roots
	StateFile  string
	RotateKey  bool // a new key at every renewal
	// BootstrapCert and BootstrapKey: the device's factory certificate
	// (PEM, then its chain) and its key (a PEM file, or a pkcs11: URI of
	// a key in a secure element), to enroll with the bundle's x5c
	// provisioner when the bundle has no token. Optional.
	BootstrapCert, BootstrapKey string
	RenewNow                    bool // renew at the first check, due or not

	Exec    string         // optional: run with /bin/sh -c after each new certificate
	PIDFile string         // optional: signal this process after each new certificate
	Signal  syscall.Signal // default SIGHUP

	CheckInterval time.Duration // trust bundle refresh; default 1h
	BackoffMin    time.Duration // first retry delay; default 1s
	BackoffMax    time.Duration // cap of the retry delay; default 5m
	Timeout       time.Duration // per request; default 30s

	Logger *slog.Logger
	// AfterWrite, if set, runs after each new certificate is on disk (tests,
	// programs embedding the agent).
	AfterWrite func()
}

// ErrStopped: the CA refused for good (revoked or unknown certificate,
// expired beyond the grace window, a used or invalid token). Renewing
// again cannot help; the device needs a new enrollment.
var ErrStopped = errors.New("agent: stopped")

// terminalCodes are refusals that no retry can turn into success.
var terminalCodes = map[string]bool{
	"certificate_revoked": true, "certificate_expired": true, "certificate_unknown": true,
	// Renewed already, for a key this device does not hold: its own retry
	// gets the successor back, so someone else renewed it.
	"certificate_renewed": true,
	"token_invalid":       true, "token_used": true, "token_expired": true, "token_revoked": true,
	"token_unknown": true, "san_not_allowed": true, "bad_csr": true,
	// Enrolled already with another key (a clone, or a lost key: an admin
	// allows re-provisioning), or revoked. A device not listed yet keeps
	// trying: the allow-list may come after the device is powered up.
	"device_enrolled": true, "device_revoked": true,
}

// Agent keeps one identity.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	bundle    *Bundle
	st        State
	id        *identity      // nil until enrolled
	roots     *x509.CertPool // trusted for the CA's API
	rootCerts []*x509.Certificate
	first     int // address index to try first: the last that answered
	retry     *backoff.Backoff
}

// New reads the bundle, state and any identity already on disk.
func New(cfg Config) (*Agent, error) {
	for name, v := range map[string]string{"bundle": cfg.BundleFile, "cert": cfg.CertFile, "key": cfg.KeyFile, "roots": cfg.RootsFile, "state": cfg.StateFile} {
		if v == "" {
			return nil, fmt.Errorf("agent: the %s file path is required", name)
		}
	}
	if cfg.Signal == 0 {
		cfg.Signal = syscall.SIGHUP
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = time.Hour
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("component", "agent"), retry: backoff.New(cfg.BackoffMin, cfg.BackoffMax)}
	var err error
	if a.bundle, err = ReadBundle(cfg.BundleFile); err != nil {
		return nil, err
	}
	if st, err := ReadState(cfg.StateFile); err == nil {
		a.st = *st
	} else if !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("state file unreadable; starting afresh", "file", cfg.StateFile, "err", err)
	}
	if err := a.loadIdentity(); err != nil {
		return nil, err
	}
	if err := a.loadRoots(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Agent) pendingKeyFile() string { return a.cfg.KeyFile + ".pending" }

// loadIdentity reads the certificate and key, finishing a write that a
// crash interrupted: a certificate that matches the pending key takes it.
func (a *Agent) loadIdentity() error {
	id, err := loadIdentity(a.cfg.CertFile, a.cfg.KeyFile)
	if err != nil {
		if _, perr := os.Stat(a.pendingKeyFile()); perr == nil {
			if id2, err2 := loadIdentity(a.cfg.CertFile, a.pendingKeyFile()); err2 == nil {
				if err := os.Rename(a.pendingKeyFile(), a.cfg.KeyFile); err != nil {
					return err
				}
				id, err = id2, nil
			}
		}
	}
	switch {
	case err == nil:
		a.id = id
		if a.st.Serial != serialHex(id.cert) {
			// A certificate we have no record of: schedule from its own dates.
			a.adopt(id.cert, id.cert.NotBefore)
		}
		return nil
	case errors.Is(err, os.ErrNotExist):
		if _, cerr := os.Stat(a.cfg.CertFile); cerr == nil {
			return fmt.Errorf("agent: certificate %s exists but key %s does not", a.cfg.CertFile, a.cfg.KeyFile)
		}
		a.st.Status = StatusEnrolling
		return nil
	default:
		return fmt.Errorf("agent: %w", err)
	}
}

// loadRoots takes the trust bundle file, or the bundle's roots. With only a
// fingerprint, trust is established at the first contact.
func (a *Agent) loadRoots() error {
	data, err := os.ReadFile(a.cfg.RootsFile)
	if errors.Is(err, os.ErrNotExist) {
		if a.bundle.Roots == "" {
			return nil
		}
		data = []byte(a.bundle.Roots)
		if err := atomicfile.Write(a.cfg.RootsFile, data, 0o644); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	certs, err := parseCerts(data)
	if err != nil {
		return fmt.Errorf("agent: roots %s: %w", a.cfg.RootsFile, err)
	}
	a.setRoots(certs)
	return nil
}

func (a *Agent) setRoots(certs []*x509.Certificate) {
	a.rootCerts, a.roots = certs, poolOf(certs)
}

func poolOf(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// State is a copy of the agent's state.
func (a *Agent) State() State { return a.st }

// Run enrolls if needed, then renews until ctx ends (nil) or the CA
// refuses for good (ErrStopped).
func (a *Agent) Run(ctx context.Context) error {
	for {
		next, err := a.Check(ctx)
		if errors.Is(err, ErrStopped) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Check does what is due now: enroll, renew, refresh the trust bundle. It
// returns when to check next; after a failure, that is a backoff delay.
func (a *Agent) Check(ctx context.Context) (time.Time, error) {
	err := a.step(ctx)
	now := time.Now()
	var next time.Time
	switch {
	case err == nil:
		a.st.Failures = 0
		a.retry.Reset()
		a.st.LastError, a.st.LastErrorAt = "", time.Time{}
		a.st.Status = StatusOK
		next = a.nextWake()
	case errors.Is(err, ErrStopped):
		a.st.Failures++
		a.st.Status, a.st.Reason, a.st.LastError, a.st.LastErrorAt = StatusStopped, err.Error(), err.Error(), now
		a.st.NextAttempt = time.Time{}
		a.saveState()
		a.log.Error("stopped: the CA refused for good; this device needs a new enrollment", "err", err)
		return time.Time{}, err
	case ctx.Err() != nil:
		return now, ctx.Err()
	default:
		a.st.Failures++
		a.st.LastError, a.st.LastErrorAt = err.Error(), now
		if a.id != nil {
			a.st.Status = StatusRetrying
		}
		next = now.Add(a.backoff(err))
		a.log.Warn("attempt failed; will retry", "err", err, "failures", a.st.Failures, "retry_at", next.Format(time.RFC3339))
	}
	a.st.NextAttempt = next
	a.saveState()
	return next, err
}

func (a *Agent) saveState() {
	if err := a.st.write(a.cfg.StateFile); err != nil {
		a.log.Error("cannot write state file", "file", a.cfg.StateFile, "err", err)
	}
}

// step runs the due work in order of importance.
func (a *Agent) step(ctx context.Context) error {
	if a.roots == nil {
		if err := a.bootstrapTrust(ctx); err != nil {
			return err
		}
	}
	fresh := false // a certificate obtained in this step, revoked by no one yet
	if a.id == nil {
		if err := a.enroll(ctx); err != nil {
			return err
		}
		a.cfg.RenewNow, fresh = false, true
	} else if a.bundle.Token != "" {
		// Enrolled earlier, but stopped before forgetting the token.
		if err := a.forgetToken(); err != nil {
			return err
		}
	}
	a.followRenewalInfo(ctx)
	if !time.Now().Before(a.st.RenewAt) || a.cfg.RenewNow {
		if err := a.renew(ctx); err != nil {
			return err
		}
		a.cfg.RenewNow, fresh = false, true
	}
	// The certificate's user is told of it until that succeeds: one that
	// failed to reload still serves the previous certificate. A hook that
	// keeps failing must not keep the revocation check from running.
	var hookErr error
	if a.st.HookPending {
		// A certificate under a root the trust bundle lacks yet (a root
		// rotation, renewed before the next check of the roots): the
		// bundle catches up before anyone is told of the certificate.
		if !a.trusts() {
			if err := a.refreshRoots(ctx); err != nil {
				return err
			}
		}
		hookErr = a.afterWrite(ctx)
	}
	if !fresh {
		if err := a.checkRevocation(ctx); err != nil {
			return err
		}
	}
	if hookErr != nil {
		return hookErr
	}
	if time.Since(a.st.RootsCheck) >= a.cfg.CheckInterval {
		if err := a.refreshRoots(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (a *Agent) nextWake() time.Time {
	next := a.st.RenewAt
	if r := a.st.RootsCheck.Add(a.cfg.CheckInterval); r.Before(next) {
		next = r
	}
	return next
}

// backoff is the delay before the next attempt: capped exponential with
// jitter, and never shorter than the server's Retry-After.
func (a *Agent) backoff(err error) time.Duration {
	d := a.retry.Next()
	var ae *client.Error
	if errors.As(err, &ae) && ae.RetryAfter > d {
		d = min(ae.RetryAfter, a.cfg.BackoffMax)
	}
	return d
}

// adopt records a new certificate and schedules its renewal: at two thirds
// of its life, counted from when it was obtained, moved by up to a twelfth
// of the life either way so that a fleet enrolled together spreads out.
func (a *Agent) adopt(c *x509.Certificate, obtained time.Time) {
	start := obtained
	if start.Before(c.NotBefore) {
		start = c.NotBefore
	}
	life := c.NotAfter.Sub(start)
	frac := 2.0/3 + (mrand.Float64()-0.5)/6
	a.st.Serial, a.st.Subject, a.st.Names = serialHex(c), c.Subject.CommonName, certNames(c)
	a.st.NotBefore, a.st.NotAfter, a.st.Obtained = c.NotBefore, c.NotAfter, obtained
	a.st.RenewAt = start.Add(time.Duration(float64(life) * frac))
	a.st.RenewWindowStart, a.st.RenewWindowEnd = time.Time{}, time.Time{}
}

// renewalInfoTimeout bounds the question below: a CA that does not answer
// leaves the schedule as it is.
const renewalInfoTimeout = 10 * time.Second

// followRenewalInfo asks the CA when to renew (RFC 9773, the window ACME
// clients get too) and moves the renewal to a random time in it when the
// window changed: the CA spreads a fleet's renewals, and moves them to now
// after an issuer rotation. Without an answer (a CA of an older release,
// or none reachable) the agent keeps its own schedule.
func (a *Agent) followRenewalInfo(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, renewalInfoTimeout)
	defer cancel()
	var ri *client.RenewalInfo
	err := a.each(ctx, &a.id.tls, func(c *client.Client) error {
		var err error
		ri, err = c.RenewalInfo(ctx, a.st.Serial)
		return err
	})
	if err != nil || ri == nil || !ri.End.After(ri.Start) {
		a.log.Debug("no renewal window from the CA; keeping the agent's own schedule", "err", err)
		return
	}
	if ri.Reason == "revoked" {
		// A revoked certificate renews nothing: the revocation check
		// stops the agent, on an answer signed for its issuer.
		return
	}
	if ri.Start.Equal(a.st.RenewWindowStart) && ri.End.Equal(a.st.RenewWindowEnd) {
		return
	}
	a.st.RenewWindowStart, a.st.RenewWindowEnd = ri.Start, ri.End
	a.st.RenewAt = ri.Start.Add(time.Duration(mrand.Int64N(int64(ri.End.Sub(ri.Start)))))
	a.log.Info("renewal scheduled in the CA's window", "serial", a.st.Serial, "window_start", ri.Start.Format(time.RFC3339),
		"window_end", ri.End.Format(time.RFC3339), "renew_at", a.st.RenewAt.Format(time.RFC3339), "reason", ri.Reason)
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// certNames lists a certificate's names as a request would: the common
// name first (if a name), then the SANs.
func certNames(c *x509.Certificate) []string {
	var out []string
	add := func(n string) {
		for _, m := range out {
			if m == n {
				return
			}
		}
		out = append(out, n)
	}
	if c.Subject.CommonName != "" {
		add(c.Subject.CommonName)
	}
	for _, n := range c.DNSNames {
		add(n)
	}
	for _, ip := range c.IPAddresses {
		add(ip.String())
	}
	for _, u := range c.URIs {
		add(u.String())
	}
	for _, e := range c.EmailAddresses {
		add(e)
	}
	return out
}

// newCSR asks for names with key: the first name is the common name, and
// each is a SAN of its kind.
func newCSR(key crypto.Signer, names []string) ([]byte, error) {
	if len(names) == 0 {
		return nil, errors.New("agent: no names to ask for")
	}
	return csrFor(key, names)
}

// csrFor is newCSR that may ask for no names (an x5c provisioner then
// gives the device all of its own).
func csrFor(key crypto.Signer, names []string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{}
	if len(names) > 0 {
		tmpl.Subject.CommonName = names[0]
	}
	for _, n := range names {
		switch {
		case net.ParseIP(n) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(n))
		case strings.Contains(n, "://"):
			u, err := url.Parse(n)
			if err != nil {
				return nil, fmt.Errorf("agent: name %q: %w", n, err)
			}
			tmpl.URIs = append(tmpl.URIs, u)
		case strings.Contains(n, "@"):
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, n)
		case strings.Contains(n, "."):
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}
	return encodePEM("CERTIFICATE REQUEST", der), nil
}

// pendingKey makes a key for the next certificate and keeps it in the
// pending file (mode 0600) until that certificate is on disk, so a crash
// between request and write loses nothing. A pending key left by such a
// crash is used again.
func (a *Agent) pendingKey() (crypto.Signer, error) {
	if k, err := readKey(a.pendingKeyFile()); err == nil {
		return k, nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	data, err := encodeKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(a.pendingKeyFile()), 0o700); err != nil {
		return nil, err
	}
	return k, atomicfile.Write(a.pendingKeyFile(), data, 0o600)
}

// trusts says whether the trust bundle verifies the current certificate.
func (a *Agent) trusts() bool {
	if a.id == nil {
		return true
	}
	inter := x509.NewCertPool()
	for _, c := range a.id.chain {
		inter.AddCert(c)
	}
	_, err := a.id.cert.Verify(x509.VerifyOptions{Roots: a.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/quorumca/quorumca/client"
	"github.com/quorumca/quorumca/internal/atomicfile"
	"github.com/quorumca/quorumca/signer"
)

func encodePEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// classify turns a terminal refusal into ErrStopped.
func classify(err error) error {
	var ae *client.Error
	if errors.As(err, &ae) && terminalCodes[ae.Code] {
		return fmt.Errorf("%w: %s (%s)", ErrStopped, ae.Message, ae.Code)
	}
	return err
}

// nextAddress reports whether a failure at one address is worth trying at
// another: the network, a proxy or a node failed, not the request.
func nextAddress(err error) bool {
	var ae *client.Error
	if errors.As(err, &ae) {
		return ae.Status >= 500 || ae.Status == http.StatusTooManyRequests || ae.Status == http.StatusMisdirectedRequest
	}
	return true
}

// each runs fn against each address in turn, starting with the last one
// that answered, until one succeeds or refuses the request itself.
func (a *Agent) each(ctx context.Context, cert *tls.Certificate, fn func(*client.Client) error) error {
	n := len(a.bundle.Addrs)
	var err error
	for i := range n {
		idx := (a.first + i) % n
		cfg := client.Config{Addr: a.bundle.Addrs[idx], RootCAs: a.roots, RetryFor: -1, Timeout: a.cfg.Timeout}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, cerr := client.New(cfg)
		if cerr != nil {
			return cerr
		}
		err = fn(c)
		c.CloseIdleConnections()
		if err == nil || !nextAddress(err) || ctx.Err() != nil {
			a.first = idx
			return classify(err)
		}
	}
	return err
}

// enroll trades the bundle's token, or the factory certificate, for the
// first certificate.
func (a *Agent) enroll(ctx context.Context) error {
	if a.bundle.Token == "" && a.cfg.BootstrapCert != "" {
		return a.enrollFactory(ctx)
	}
	if a.bundle.Token == "" {
		return fmt.Errorf("%w: no certificate and no enrollment token in %s", ErrStopped, a.cfg.BundleFile)
	}
	err := a.obtain(ctx, "enrolled", nil, newCSR, func(c *client.Client, csr []byte) (*client.Signed, error) {
		return c.Sign(ctx, csr, a.bundle.Token)
	})
	if err != nil {
		return err
	}
	return a.forgetToken()
}

// enrollFactory enrolls with the bundle's x5c provisioner, presenting the
// factory certificate in the TLS handshake. Asked again after a lost
// answer (same key), the CA answers with the same certificate.
func (a *Agent) enrollFactory(ctx context.Context) error {
	if a.bundle.Provisioner == "" {
		return fmt.Errorf("%w: %s names no provisioner to enroll with by the factory certificate", ErrStopped, a.cfg.BundleFile)
	}
	boot, err := factoryIdentity(ctx, a.cfg.BootstrapCert, a.cfg.BootstrapKey)
	if err != nil {
		return fmt.Errorf("%w: factory identity: %v", ErrStopped, err)
	}
	return a.obtain(ctx, "enrolled by factory certificate", boot, csrFor, func(c *client.Client, csr []byte) (*client.Signed, error) {
		return c.SignX5C(ctx, csr, a.bundle.Provisioner)
	})
}

// obtain makes the pending key and its CSR for the bundle's names, asks
// sign at each address in turn (presenting cert, if set), and installs
// what comes back.
func (a *Agent) obtain(ctx context.Context, what string, cert *tls.Certificate, makeCSR func(crypto.Signer, []string) ([]byte, error),
	sign func(*client.Client, []byte) (*client.Signed, error)) error {
	key, err := a.pendingKey()
	if err != nil {
		return err
	}
	csr, err := makeCSR(key, a.bundle.Names)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStopped, err)
	}
	a.st.LastAttempt = time.Now()
	var signed *client.Signed
	err = a.each(ctx, cert, func(c *client.Client) error {
		var err error
		signed, err = sign(c, csr)
		return err
	})
	if err != nil {
		a.st.LastResult = "enrollment failed"
		return fmt.Errorf("enroll: %w", err)
	}
	a.st.LastResult = "enrolled"
	if err := a.install(signed, key, true); err != nil {
		return err
	}
	a.log.Info(what, "serial", a.st.Serial, "names", strings.Join(a.st.Names, ","),
		"not_after", a.st.NotAfter.Format(time.RFC3339), "renew_at", a.st.RenewAt.Format(time.RFC3339))
	return nil
}

// factoryIdentity loads the factory certificate and its key: a PEM file,
// or a pkcs11: URI (a key that never leaves the secure element; the
// PKCS#11 build).
func factoryIdentity(ctx context.Context, certFile, keyFile string) (*tls.Certificate, error) {
	if !strings.HasPrefix(keyFile, "pkcs11:") {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		return &c, err
	}
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, err
	}
	k, err := signer.Open(ctx, keyFile)
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(certs[0].PublicKey, k.Public()) {
		return nil, errors.New("the key is not the factory certificate's")
	}
	return &tls.Certificate{Certificate: ders(certs), PrivateKey: signer.CryptoSigner(context.WithoutCancel(ctx), k), Leaf: certs[0]}, nil
}

// forgetToken removes the used token from the bundle file.
func (a *Agent) forgetToken() error {
	b := *a.bundle
	b.Token = ""
	if err := b.Write(a.cfg.BundleFile); err != nil {
		return fmt.Errorf("remove the used token from %s: %w", a.cfg.BundleFile, err)
	}
	a.bundle = &b
	return nil
}

// renew trades the current certificate (in the TLS handshake) for its
// successor, with a new key if configured. The current files stay until the
// new ones are written.
func (a *Agent) renew(ctx context.Context) error {
	var csr []byte
	key := a.id.key
	if a.cfg.RotateKey {
		var err error
		if key, err = a.pendingKey(); err != nil {
			return err
		}
		if csr, err = newCSR(key, certNames(a.id.cert)); err != nil {
			return err
		}
	}
	a.st.LastAttempt = time.Now()
	var signed *client.Signed
	err := a.each(ctx, &a.id.tls, func(c *client.Client) error {
		var err error
		signed, err = c.Renew(ctx, csr)
		return err
	})
	if err != nil {
		a.st.LastResult = "renewal failed"
		return fmt.Errorf("renew %s: %w", a.st.Serial, err)
	}
	old := a.st.Serial
	a.st.Renewals++
	a.st.LastResult = "renewed"
	if err := a.install(signed, key, a.cfg.RotateKey); err != nil {
		return err
	}
	a.log.Info("renewed", "serial", a.st.Serial, "previous", old, "names", strings.Join(a.st.Names, ","),
		"not_after", a.st.NotAfter.Format(time.RFC3339), "renew_at", a.st.RenewAt.Format(time.RFC3339),
		"key_rotated", a.cfg.RotateKey)
	return nil
}

// install writes a new certificate (then its key, if new) and adopts it.
func (a *Agent) install(s *client.Signed, key crypto.Signer, newKey bool) error {
	leafs, err := parseCerts([]byte(s.Certificate))
	if err != nil {
		return fmt.Errorf("CA sent an unreadable certificate: %w", err)
	}
	leaf := leafs[0]
	if !publicKeyEqual(leaf.PublicKey, key.Public()) {
		return errors.New("CA sent a certificate for another key")
	}
	full := append([]byte{}, s.Certificate...)
	var chain []byte
	for _, c := range s.Chain {
		chain = append(chain, c...)
	}
	full = append(full, chain...)
	if err := atomicfile.Write(a.cfg.CertFile, full, 0o644); err != nil {
		return err
	}
	if newKey {
		// The certificate is in place: its key follows (a crash between the
		// two is finished by loadIdentity).
		if err := os.Rename(a.pendingKeyFile(), a.cfg.KeyFile); err != nil {
			return err
		}
	}
	if a.cfg.ChainFile != "" {
		if err := atomicfile.Write(a.cfg.ChainFile, chain, 0o644); err != nil {
			return err
		}
	}
	id, err := loadIdentity(a.cfg.CertFile, a.cfg.KeyFile)
	if err != nil {
		return err
	}
	a.id = id
	a.adopt(leaf, time.Now())
	a.st.Status, a.st.Failures, a.st.LastError, a.st.LastErrorAt = StatusOK, 0, "", time.Time{}
	a.st.Revocation, a.st.RevocationChecked, a.st.HookPending = "", time.Time{}, true
	a.saveState()
	return nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// afterWrite tells whoever uses the certificate that it changed. A
// failure is logged with the command's output and returned; the step then
// fails (-once exits non-zero) and the next check tries again.
func (a *Agent) afterWrite(ctx context.Context) error {
	var errs []error
	if a.cfg.Exec != "" {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		cmd := exec.CommandContext(cctx, "/bin/sh", "-c", a.cfg.Exec)
		cmd.Env = append(os.Environ(), "QUORUMCA_CERT_FILE="+a.cfg.CertFile, "QUORUMCA_KEY_FILE="+a.cfg.KeyFile,
			"QUORUMCA_CHAIN_FILE="+a.cfg.ChainFile, "QUORUMCA_ROOTS_FILE="+a.cfg.RootsFile, "QUORUMCA_SERIAL="+a.st.Serial)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			output := strings.TrimSpace(string(out))
			a.log.Error("post-renewal command failed", "exec", a.cfg.Exec, "err", err, "output", output)
			if len(output) > 200 {
				output = output[:200] + "..."
			}
			errs = append(errs, fmt.Errorf("-exec %q: %v: %q", a.cfg.Exec, err, output))
		}
	}
	if a.cfg.PIDFile != "" {
		if err := signalPIDFile(a.cfg.PIDFile, a.cfg.Signal); err != nil {
			a.log.Error("cannot signal the certificate's user", "pid_file", a.cfg.PIDFile, "err", err)
			errs = append(errs, fmt.Errorf("-pid-file: %w", err))
		}
	}
	if a.cfg.AfterWrite != nil {
		a.cfg.AfterWrite()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telling the certificate's user: %w", err)
	}
	a.st.HookPending = false
	return nil
}

func signalPIDFile(path string, sig os.Signal) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("%s holds no process ID", path)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Signal(sig)
}

// fetchRoots GETs /v1/roots from addr with tc, returning the roots and the
// connection's TLS state.
func (a *Agent) fetchRoots(ctx context.Context, addr string, tc *tls.Config) ([]*x509.Certificate, *tls.ConnectionState, error) {
	tr := &http.Transport{TLSClientConfig: tc, DialContext: (&net.Dialer{Timeout: a.cfg.Timeout}).DialContext}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(addr, "/")+"/v1/roots", nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := (&http.Client{Transport: tr, Timeout: a.cfg.Timeout}).Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, &client.Error{Status: resp.StatusCode, Code: "http_error", Message: "GET /v1/roots: " + resp.Status}
	}
	var body struct {
		Roots []string `json:"roots"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, nil, fmt.Errorf("GET /v1/roots: %w", err)
	}
	var roots []*x509.Certificate
	for _, p := range body.Roots {
		cs, err := parseCerts([]byte(p))
		if err != nil {
			return nil, nil, fmt.Errorf("GET /v1/roots: %w", err)
		}
		roots = append(roots, cs...)
	}
	if len(roots) == 0 {
		return nil, nil, errors.New("GET /v1/roots: no roots")
	}
	return roots, resp.TLS, nil
}

// verifiesServer reports whether roots verify the server's chain in cs,
// for the host of addr.
func verifiesServer(roots []*x509.Certificate, cs *tls.ConnectionState, addr string) bool {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: poolOf(roots), Intermediates: inter,
		DNSName: hostOf(addr), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err == nil
}

func hostOf(addr string) string {
	u, err := url.Parse(addr)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// bootstrapTrust establishes trust from the bundle's root fingerprint: the
// CA's roots are fetched without verification, then kept only if the root
// with that fingerprint verifies the very connection they came over.
func (a *Agent) bootstrapTrust(ctx context.Context) error {
	fp, err := a.bundle.fingerprint()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStopped, err)
	}
	var lastErr error
	for _, addr := range a.bundle.Addrs {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true} // verified below, against the fingerprint
		roots, cs, err := a.fetchRoots(ctx, addr, tc)
		if err != nil {
			lastErr = err
			continue
		}
		var anchor *x509.Certificate
		for _, r := range roots {
			if Fingerprint(r) == fmt.Sprintf("%x", fp) {
				anchor = r
			}
		}
		if anchor == nil || !verifiesServer([]*x509.Certificate{anchor}, cs, addr) {
			lastErr = fmt.Errorf("%s is not the CA of the bundle's root fingerprint", addr)
			continue
		}
		if err := atomicfile.Write(a.cfg.RootsFile, encodeCerts(ders(roots)...), 0o644); err != nil {
			return err
		}
		a.setRoots(roots)
		a.st.RootsCheck = time.Now()
		a.log.Info("trust established from the root fingerprint", "via", addr, "roots", len(roots))
		return nil
	}
	return fmt.Errorf("trust bootstrap: %w", lastErr)
}

func ders(cs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(cs))
	for i, c := range cs {
		out[i] = c.Raw
	}
	return out
}

// refreshRoots replaces the trust bundle with the CA's current roots,
// fetched over a connection the current ones verify. Whatever current root
// verifies the CA's own certificate stays, should the new set lack it (an
// API certificate from another CA, or a rotation not finished): dropping
// it would lock the device out.
func (a *Agent) refreshRoots(ctx context.Context) error {
	var roots []*x509.Certificate
	var cs *tls.ConnectionState
	var addr string
	err := a.each(ctx, nil, func(c *client.Client) error {
		var err error
		addr = c.Addr()
		roots, cs, err = a.fetchRoots(ctx, addr, &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: a.roots})
		return err
	})
	if err != nil {
		return fmt.Errorf("refresh roots: %w", err)
	}
	a.st.RootsCheck = time.Now()
	if !verifiesServer(roots, cs, addr) {
		for _, r := range a.rootCerts {
			if verifiesServer([]*x509.Certificate{r}, cs, addr) {
				roots = append(roots, r)
			}
		}
	}
	data := encodeCerts(ders(roots)...)
	if old, _ := os.ReadFile(a.cfg.RootsFile); bytes.Equal(old, data) {
		return nil
	}
	if err := atomicfile.Write(a.cfg.RootsFile, data, 0o644); err != nil {
		return err
	}
	a.setRoots(roots)
	a.log.Info("trust bundle updated", "roots", len(roots))
	return nil
}

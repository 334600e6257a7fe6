package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quorumca/quorumca/client"
	"github.com/quorumca/quorumca/internal/backoff"
)

func selfSigned(t testing.TB, key crypto.Signer, cn string, notBefore, notAfter time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		DNSNames: []string{cn}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseBundle(t *testing.T) {
	root := string(encodeCerts(selfSigned(t, newKey(t), "root.example", time.Now(), time.Now().Add(time.Hour))))
	rootJSON, _ := json.Marshal(root)
	fp := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, doc, err string
	}{
		{"roots", `{"addrs": ["https://ca.example:8443"], "roots": ` + string(rootJSON) + `, "token": "t", "names": ["d.example"]}`, ""},
		{"fingerprint with colons", `{"addrs": ["https://ca.example"], "root_fingerprint": "` + strings.Repeat("AB:", 31) + `AB", "names": ["d.example"]}`, ""},
		{"no addrs", `{"addrs": [], "root_fingerprint": "` + fp + `"}`, "no addrs"},
		{"plain http", `{"addrs": ["http://ca.example"], "root_fingerprint": "` + fp + `"}`, "https://host:port"},
		{"path", `{"addrs": ["https://ca.example/v1"], "root_fingerprint": "` + fp + `"}`, "https://host:port"},
		{"no trust", `{"addrs": ["https://ca.example"]}`, "roots or root_fingerprint"},
		{"short fingerprint", `{"addrs": ["https://ca.example"], "root_fingerprint": "abcd"}`, "SHA-256"},
		{"roots not PEM", `{"addrs": ["https://ca.example"], "roots": "hello"}`, "roots"},
		{"bad name", `{"addrs": ["https://ca.example"], "root_fingerprint": "` + fp + `", "names": ["a b"]}`, "bad name"},
		{"unknown field", `{"addrs": ["https://ca.example"], "root_fingerprint": "` + fp + `", "colour": 1}`, "unknown field"},
		{"not JSON", `addrs: x`, "bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBundle([]byte(tc.doc))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v; want one saying %q", err, tc.err)
			}
		})
	}
}

func FuzzParseBundle(f *testing.F) {
	f.Add([]byte(`{"addrs": ["https://ca.example:8443"], "root_fingerprint": "` + strings.Repeat("ab", 32) + `", "token": "t", "names": ["d.example"]}`))
	f.Add([]byte(`{"addrs": ["https://[::1]:1"], "roots": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(data)
		if err != nil {
			return
		}
		// What parses survives a write and a read.
		again, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseBundle(again); err != nil {
			t.Fatalf("a parsed bundle does not parse again: %v", err)
		}
	})
}

// Renewal points fall between 7/12 and 9/12 of the life, counted from when
// the certificate was obtained (not its backdated NotBefore), and spread.
func TestScheduleWithinJitterWindow(t *testing.T) {
	a := &Agent{}
	obtained := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: obtained.Add(-time.Minute), NotAfter: obtained.Add(24 * time.Hour)}
	lo, hi := obtained.Add(14*time.Hour), obtained.Add(18*time.Hour)
	var first, last time.Time
	for i := range 2000 {
		a.adopt(c, obtained)
		at := a.st.RenewAt
		if at.Before(lo) || at.After(hi) {
			t.Fatalf("renewal at %s; want %s-%s", at, lo, hi)
		}
		if i == 0 || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	if last.Sub(first) < 3*time.Hour {
		t.Fatalf("2000 draws span only %s of the 4h window", last.Sub(first))
	}
	// A certificate obtained before its NotBefore (clock skew) counts from NotBefore.
	a.adopt(c, obtained.Add(-time.Hour))
	if a.st.RenewAt.Before(c.NotBefore.Add(14 * time.Hour)) {
		t.Fatalf("renewal at %s counts from before NotBefore", a.st.RenewAt)
	}
}

func TestBackoff(t *testing.T) {
	a := &Agent{cfg: Config{BackoffMin: time.Second, BackoffMax: 8 * time.Second}, retry: backoff.New(time.Second, 8*time.Second)}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		d := a.backoff(errors.New("down"))
		if d < want/2 || d > want {
			t.Fatalf("attempt %d: %s; want %s-%s", i, d, want/2, want)
		}
	}
	a.retry.Reset()
	if d := a.backoff(&client.Error{Status: http.StatusTooManyRequests, RetryAfter: 5 * time.Second}); d != 5*time.Second {
		t.Fatalf("Retry-After 5s gave %s", d)
	}
	if d := a.backoff(&client.Error{Status: http.StatusServiceUnavailable, RetryAfter: time.Hour}); d != 8*time.Second {
		t.Fatalf("Retry-After beyond the cap gave %s", d)
	}
}

func TestClassify(t *testing.T) {
	for code, stop := range map[string]bool{"certificate_revoked": true, "token_used": true, "certificate_expired": true,
		"no_leader": false, "overloaded": false, "http_error": false} {
		err := classify(&client.Error{Status: 400, Code: code, Message: "m"})
		if errors.Is(err, ErrStopped) != stop {
			t.Errorf("%s: stopped=%v, want %v", code, errors.Is(err, ErrStopped), stop)
		}
	}
	if errors.Is(classify(io.ErrUnexpectedEOF), ErrStopped) {
		t.Error("a network error stopped the agent")
	}
}

func TestNewCSRNames(t *testing.T) {
	der, err := newCSR(newKey(t), []string{"d.example", "10.1.2.3", "spiffe://fleet/d", "ops@d.example", "other.example"})
	if err != nil {
		t.Fatal(err)
	}
	blocks, _ := parseCSRPEM(der)
	if blocks.Subject.CommonName != "d.example" || len(blocks.DNSNames) != 2 || len(blocks.IPAddresses) != 1 ||
		len(blocks.URIs) != 1 || len(blocks.EmailAddresses) != 1 {
		t.Fatalf("CSR names: cn=%s dns=%v ip=%v uri=%v email=%v", blocks.Subject.CommonName, blocks.DNSNames,
			blocks.IPAddresses, blocks.URIs, blocks.EmailAddresses)
	}
	if _, err := newCSR(newKey(t), nil); err == nil {
		t.Fatal("a CSR with no names")
	}
}

func parseCSRPEM(p []byte) (*x509.CertificateRequest, error) {
	b, _ := pemDecode(p)
	return x509.ParseCertificateRequest(b)
}

// A crash between writing a certificate and moving its new key into place
// is finished at the next start.
func TestLoadIdentityFinishesAnInterruptedWrite(t *testing.T) {
	dir := t.TempDir()
	oldKey, newK := newKey(t), newKey(t)
	cfg := Config{BundleFile: filepath.Join(dir, "bundle.json"), CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"),
		RootsFile: filepath.Join(dir, "roots.pem"), StateFile: filepath.Join(dir, "state.json"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	der := selfSigned(t, newK, "d.example", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	b := Bundle{Addrs: []string{"https://127.0.0.1:1"}, Roots: string(encodeCerts(der)), Names: []string{"d.example"}}
	if err := b.Write(cfg.BundleFile); err != nil {
		t.Fatal(err)
	}
	oldPEM, _ := encodeKey(oldKey)
	newPEM, _ := encodeKey(newK)
	os.WriteFile(cfg.KeyFile, oldPEM, 0o600)
	os.WriteFile(cfg.KeyFile+".pending", newPEM, 0o600)
	os.WriteFile(cfg.CertFile, encodeCerts(der), 0o644)
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.id == nil || !a.id.key.Public().(*ecdsa.PublicKey).Equal(newK.Public()) {
		t.Fatal("the pending key was not taken")
	}
	if _, err := os.Stat(cfg.KeyFile + ".pending"); !os.IsNotExist(err) {
		t.Fatal("the pending key file is still there")
	}
}

// Without a certificate and without a token there is nothing to do but
// say so.
func TestNoCertificateNoToken(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{BundleFile: filepath.Join(dir, "bundle.json"), CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"),
		RootsFile: filepath.Join(dir, "roots.pem"), StateFile: filepath.Join(dir, "state.json"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	der := selfSigned(t, newKey(t), "ca.example", time.Now(), time.Now().Add(time.Hour))
	b := Bundle{Addrs: []string{"https://127.0.0.1:1"}, Roots: string(encodeCerts(der)), Names: []string{"d.example"}}
	if err := b.Write(cfg.BundleFile); err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Check(context.Background()); !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "no enrollment token") {
		t.Fatalf("check: %v", err)
	}
	st, err := ReadState(cfg.StateFile)
	if err != nil || st.Status != StatusStopped {
		t.Fatalf("state %+v %v", st, err)
	}
}

func pemDecode(p []byte) ([]byte, error) {
	b, _ := pem.Decode(p)
	if b == nil {
		return nil, errors.New("no PEM")
	}
	return b.Bytes, nil
}

// After a new certificate: the command runs with the files named in its
// environment, and the process in the PID file gets the signal.
func TestAfterWriteHooks(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "marker")
	pidFile := filepath.Join(dir, "pid")
	os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	a := &Agent{cfg: Config{CertFile: "/c.pem", KeyFile: "/k.pem", Exec: `echo "$QUORUMCA_SERIAL $QUORUMCA_CERT_FILE" > ` + marker,
		PIDFile: pidFile, Signal: syscall.SIGUSR1}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.st.Serial = "abc123"
	a.st.HookPending = true
	if err := a.afterWrite(context.Background()); err != nil || a.st.HookPending {
		t.Fatalf("hooks: %v, pending %v", err, a.st.HookPending)
	}
	if got, _ := os.ReadFile(marker); strings.TrimSpace(string(got)) != "abc123 /c.pem" {
		t.Fatalf("command wrote %q", got)
	}
	select {
	case <-sigs:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal")
	}
}

// A failing command is an error that carries its output, and stays
// pending so the next check runs it again.
func TestFailingExecHookIsAnError(t *testing.T) {
	a := &Agent{cfg: Config{Exec: "echo cannot reload >&2; exit 3"}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.st.HookPending = true
	err := a.afterWrite(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot reload") || !strings.Contains(err.Error(), "exit status 3") || !a.st.HookPending {
		t.Fatalf("hook: %v, pending %v", err, a.st.HookPending)
	}
}

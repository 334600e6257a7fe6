package client

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A 503 is retried after the Retry-After the node asks for, with the same
// body; the second answer is the result.
func TestUnavailableIsRetriedAfterRetryAfter(t *testing.T) {
	var calls atomic.Int32
	var bodies [2]string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		if n <= 2 {
			bodies[n-1] = string(b)
		}
		w.Header().Set("Content-Type", "application/json")
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"cluster: timed out"}}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"serial":"0a"}`)
	}))
	defer srv.Close()
	c, err := New(Config{Addr: srv.URL, RootCAs: rootsOf(srv)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s, err := c.Sign(context.Background(), []byte("csr"), "token")
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); s.Serial != "0a" || calls.Load() != 2 || took < time.Second {
		t.Fatalf("serial %q after %d calls in %s, want 0a after 2 calls and at least the 1s asked for", s.Serial, calls.Load(), took)
	}
	if bodies[0] == "" || bodies[0] != bodies[1] {
		t.Fatalf("the retry sent %q, the first call %q", bodies[1], bodies[0])
	}
}

// A Retry-After longer than the retry window ends the retries with the
// error, at the window's end, not at the hint's.
func TestRetryAfterIsBoundedByRetryFor(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":{"code":"unavailable","message":"later"}}`)
	}))
	defer srv.Close()
	c, err := New(Config{Addr: srv.URL, RootCAs: rootsOf(srv), RetryFor: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Sign(context.Background(), []byte("csr"), "token")
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || e.RetryAfter != time.Hour {
		t.Fatalf("got %v, want the 503", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("gave up after %s, want about the 300ms retry window", took)
	}
}

func rootsOf(srv *httptest.Server) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return pool
}

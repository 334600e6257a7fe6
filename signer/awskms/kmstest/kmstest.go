// Package kmstest runs a KMS-compatible server (github.com/nsmithuk/local-kms)
// inside a test, on 127.0.0.1, with its keys in a test directory. It can
// throttle a burst of requests and counts requests in flight, so tests can
// check retries and concurrency caps against a real KMS protocol peer.
package kmstest

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	kmsconfig "github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
	"github.com/nsmithuk/local-kms/src/handler"
	"github.com/sirupsen/logrus"
)

// Region and account the server reports.
const (
	Region  = "eu-west-2"
	Account = "111122223333"
)

// Server is a running local KMS.
type Server struct {
	URL string

	srv      *http.Server
	ln       net.Listener
	db       *data.Database
	throttle atomic.Int64 // requests still to refuse with ThrottlingException
	inflight atomic.Int64
	peak     atomic.Int64
	signs    atomic.Int64
	mu       sync.Mutex
	closed   bool
}

var configOnce sync.Once

// Start serves a local KMS until the test ends. It sets the AWS environment
// the SDK reads (static test credentials, the region, no instance metadata),
// so no request leaves 127.0.0.1.
func Start(t testing.TB) *Server {
	t.Helper()
	configOnce.Do(func() {
		kmsconfig.AWSRegion, kmsconfig.AWSAccountId = Region, Account
	})
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": Region,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	} {
		t.Setenv(k, v)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{ln: ln, URL: "http://" + ln.Addr().String(), db: data.NewDatabase(filepath.Join(t.TempDir(), "kms"))}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve)}
	go s.srv.Serve(ln)
	t.Cleanup(s.Close)
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	target := r.Header.Get("X-Amz-Target")
	if target == "TrentService.Sign" {
		if s.throttle.Add(-1) >= 0 {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Header().Set("X-Amzn-ErrorType", "ThrottlingException")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"__type":"ThrottlingException","message":"Rate exceeded"}`))
			return
		}
		s.signs.Add(1)
	}
	// local-kms's own HandleRequest logs every request to stderr; this is
	// the same dispatch (by X-Amz-Target) with a quiet logger.
	method := reflect.ValueOf(handler.NewRequestHandler(r, quiet, s.db)).MethodByName(strings.TrimPrefix(target, "TrentService."))
	if r.Method != http.MethodPost || !strings.HasPrefix(target, "TrentService.") || !method.IsValid() {
		http.Error(w, "not implemented", http.StatusNotImplemented)
		return
	}
	resp := method.Call(nil)[0].Interface().(handler.Response)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(resp.Code)
	io.WriteString(w, resp.Body)
}

var quiet = func() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}()

// Throttle makes the next n Sign requests fail with ThrottlingException.
func (s *Server) Throttle(n int) { s.throttle.Store(int64(n)) }

// Peak is the most requests that were ever in flight at once; ResetPeak
// starts counting again.
func (s *Server) Peak() int  { return int(s.peak.Load()) }
func (s *Server) ResetPeak() { s.peak.Store(0) }
func (s *Server) Signs() int { return int(s.signs.Load()) }

// KeyURI is the awskms URI of a key on this server.
func (s *Server) KeyURI(key string) string {
	return "awskms:" + key + "?endpoint=" + s.URL + "&region=" + Region
}

// Close stops the server: clients then see connection refused.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.srv.Close()
	s.db.Close()
}

package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quorumca/quorumca/internal/errs"
)

// Long responses (audit follows, snapshot downloads) outlive the server's
// WriteTimeout, so they lift it; instead each write gets its own deadline
// (and each read of a snapshot upload).
// A client that stops reading is then cut off once a write has waited
// WriteTimeout (HTTP/1.1: the connection is closed; HTTP/2: the stream is
// reset), while a slow client that keeps reading is not. Follows are also
// counted, per node and per admin, since each holds a connection and wakes
// at every change.

// StreamLimits bound long responses. Zero values take the defaults.
type StreamLimits struct {
	MaxFollows         int // audit follows at once on this node (default 64)
	MaxFollowsPerAdmin int // of one admin credential (default 4)
	// MaxSnapshots bounds snapshot downloads and uploads at once on this
	// node (default 2): each holds a full copy of the state on disk while
	// the client reads or sends it.
	MaxSnapshots int
	WriteTimeout time.Duration // longest one write may wait for the client (default 30s)
}

const (
	defaultMaxFollows         = 64
	defaultMaxFollowsPerAdmin = 4
	defaultMaxSnapshots       = 2
	defaultStreamWriteTimeout = 30 * time.Second
)

// WithDefaults fills zero values with the defaults.
func (l StreamLimits) WithDefaults() StreamLimits {
	if l.MaxFollows <= 0 {
		l.MaxFollows = defaultMaxFollows
	}
	if l.MaxFollowsPerAdmin <= 0 {
		l.MaxFollowsPerAdmin = defaultMaxFollowsPerAdmin
	}
	if l.MaxSnapshots <= 0 {
		l.MaxSnapshots = defaultMaxSnapshots
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = defaultStreamWriteTimeout
	}
	return l
}

// streams counts the long responses in progress.
type streams struct {
	limits StreamLimits
	open   *prometheus.GaugeVec

	mu        sync.Mutex
	follows   int
	byAdmin   map[string]int
	snapshots int
}

func newStreams(l StreamLimits, reg prometheus.Registerer) *streams {
	s := &streams{limits: l.WithDefaults(), byAdmin: map[string]int{},
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "quorumca_api_streams",
			Help: "Long requests in progress: audit follows, snapshot downloads and uploads.",
		}, []string{"kind"})}
	if reg != nil {
		reg.MustRegister(s.open)
	}
	return s
}

// follow takes a follow slot for admin, or says why there is none.
func (s *streams) follow(admin string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.byAdmin[admin] >= s.limits.MaxFollowsPerAdmin:
		return nil, tooManyStreams(fmt.Sprintf("this credential already follows the audit log %d times, the most allowed; close one or retry later", s.limits.MaxFollowsPerAdmin))
	case s.follows >= s.limits.MaxFollows:
		return nil, tooManyStreams(fmt.Sprintf("this node already serves %d audit follows, the most allowed; retry later or on another node", s.limits.MaxFollows))
	}
	s.follows++
	s.byAdmin[admin]++
	done := s.track("audit_follow")
	return func() {
		done()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.follows--
		if s.byAdmin[admin]--; s.byAdmin[admin] == 0 {
			delete(s.byAdmin, admin)
		}
	}, nil
}

// snapshot takes a slot for a snapshot download or upload (kind), or says
// why there is none.
func (s *streams) snapshot(kind string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snapshots >= s.limits.MaxSnapshots {
		return nil, tooManyStreams(fmt.Sprintf("this node already serves %d snapshot transfers, the most allowed; retry later or on another node", s.limits.MaxSnapshots))
	}
	s.snapshots++
	done := s.track(kind)
	return func() {
		done()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.snapshots--
	}, nil
}

// track counts one long response of a kind until done is called.
func (s *streams) track(kind string) (done func()) {
	g := s.open.WithLabelValues(kind)
	g.Inc()
	return g.Dec
}

func tooManyStreams(msg string) error {
	return refusal(errs.RateLimited, "too_many_streams", msg)
}

// streamWriter writes a long response, each write under its own deadline.
type streamWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	timeout time.Duration
}

func (s *Server) streamWriter(w http.ResponseWriter) *streamWriter {
	return &streamWriter{w: w, rc: http.NewResponseController(w), timeout: s.streams.limits.WriteTimeout}
}

// Write writes b, failing if the client does not take it within the
// timeout.
func (sw *streamWriter) Write(b []byte) (int, error) {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	return sw.w.Write(b)
}

// Flush sends what is buffered under a deadline, then lifts the deadline
// for the wait until the next write: an HTTP/2 stream's deadline fires
// even while nothing is being written.
func (sw *streamWriter) Flush() error {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	if err := sw.rc.Flush(); err != nil {
		return err
	}
	return sw.idle()
}

// finish sends what is buffered under a fresh deadline, and leaves one for
// the end of the response, which the server writes after the handler
// returns: a slow client that keeps reading gets it all; a gone one is
// cut off.
func (sw *streamWriter) finish() {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	if sw.rc.Flush() == nil {
		_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	}
}

// idle lifts the deadline (and the server's WriteTimeout) while the
// response waits for something to write.
func (sw *streamWriter) idle() error {
	if err := sw.rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// streamReader reads a long request body (a snapshot upload), each read
// under its own deadline: a client that stops sending is cut off, a slow
// one is not.
type streamReader struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
}

func (sr *streamReader) Read(b []byte) (int, error) {
	_ = sr.rc.SetReadDeadline(time.Now().Add(sr.timeout))
	return sr.r.Read(b)
}

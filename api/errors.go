package api

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/quorumca/quorumca/internal/errs"
)

// ErrorBody is the shape of every error reply.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// statusOf is the HTTP status of each kind of refusal: the one place a
// domain error becomes a status. Internal errors are not refusals: 500.
var statusOf = map[errs.Kind]int{
	errs.Invalid:         http.StatusBadRequest,
	errs.Unauthenticated: http.StatusUnauthorized,
	errs.Forbidden:       http.StatusForbidden,
	errs.NotFound:        http.StatusNotFound,
	errs.Stalled:         http.StatusRequestTimeout,
	errs.Conflict:        http.StatusConflict,
	errs.TooLarge:        http.StatusRequestEntityTooLarge,
	errs.RateLimited:     http.StatusTooManyRequests,
	errs.Unavailable:     http.StatusServiceUnavailable,
}

// refusal is a refusal made in this package: a request malformed in a way
// only HTTP knows.
func refusal(kind errs.Kind, code, msg string) error {
	return &errs.Error{Kind: kind, Code: code, Message: msg}
}

// fail writes err as a JSON error with the status it maps to, and reports
// the refusal.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) { s.failAs(w, r, err, nil) }

// failAs is fail for a protocol that answers some refusals its own way
// (EST: 202 for "not now"): as, if set, may set headers and change the
// status.
func (s *Server) failAs(w http.ResponseWriter, r *http.Request, err error, as func(http.Header, int) int) {
	status, code, msg := s.classify(r, err)
	setRetryAfter(w, status, err)
	if as != nil {
		status = as(w.Header(), status)
	}
	s.report(r, status, code, msg)
	writeError(w, status, code, msg)
}

// report hands a refusal to the Refused hook and the request's metrics.
func (s *Server) report(r *http.Request, status int, code, msg string) {
	if s.Refused != nil {
		s.Refused(r, status, code, msg)
	}
	setOutcome(r, code)
}

// setRetryAfter tells a client refused for now (503, 429) when to ask
// again: the error's hint, else a second.
func setRetryAfter(w http.ResponseWriter, status int, err error) {
	if status != http.StatusServiceUnavailable && status != http.StatusTooManyRequests {
		return
	}
	retry := 1
	if e := errs.Of(err); e != nil && e.RetryAfter > 0 {
		retry = max(1, int(math.Ceil(e.RetryAfter.Seconds())))
	}
	w.Header().Set("Retry-After", strconv.Itoa(retry))
}

// classify maps an error to status, code and message. A refusal's message
// is the error's whole text: what its sentinel says and the detail added
// where it was wrapped.
func (s *Server) classify(r *http.Request, err error) (int, string, string) {
	if e := errs.Of(err); e != nil {
		if status, ok := statusOf[e.Kind]; ok {
			return status, e.Code, err.Error()
		}
	}
	if errors.Is(err, context.Canceled) || !ctxAlive(r.Context()) {
		return http.StatusServiceUnavailable, "canceled", "request canceled"
	}
	// A deadline that ended below us (a KMS call, a wait) is "not now":
	// the packages wrap theirs in sentinels, and this catches the rest.
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable, "unavailable", "timed out, try again"
	}
	s.Logger.LogAttrs(r.Context(), slog.LevelError, "request failed", slog.String("path", LogPath(r)), slog.Any("err", err))
	return http.StatusInternalServerError, "internal", "internal error"
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

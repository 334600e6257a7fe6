package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// ErrorBody is the shape of every error reply.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// requestError is a malformed request caught in this package.
type requestError struct {
	status    int
	code, msg string
}

func (e *requestError) Error() string { return e.msg }

// fsmStatus maps business rejections to statuses.
var fsmStatus = map[string]int{
	fsm.ErrTokenInvalid.Code:     http.StatusUnauthorized,
	fsm.ErrTokenExpired.Code:     http.StatusUnauthorized,
	fsm.ErrTokenUsed.Code:        http.StatusConflict,
	fsm.ErrNameNotAllowed.Code:   http.StatusForbidden,
	fsm.ErrSerialExists.Code:     http.StatusConflict,
	fsm.ErrConflict.Code:         http.StatusConflict,
	fsm.ErrAuthorityUnknown.Code: http.StatusServiceUnavailable,
	fsm.ErrTokenRevoked.Code:     http.StatusUnauthorized,
	fsm.ErrTokenUnknown.Code:     http.StatusNotFound,
	fsm.ErrCertUnknown.Code:      http.StatusNotFound,
	fsm.ErrCertRevoked.Code:      http.StatusForbidden,
	fsm.ErrCertExpired.Code:      http.StatusForbidden,
	fsm.ErrCertRenewed.Code:      http.StatusConflict,
	fsm.ErrVersionMismatch.Code:  http.StatusConflict,
	fsm.ErrProvisioner.Code:      http.StatusBadRequest,
	fsm.ErrNotFoundAdmin.Code:    http.StatusNotFound,
	fsm.ErrUpgrading.Code:        http.StatusServiceUnavailable,
	fsm.ErrMalformed.Code:        http.StatusBadRequest,
	fsm.ErrLastAdmin.Code:        http.StatusConflict,
	fsm.ErrAdminInactive.Code:    http.StatusForbidden,

	authority.ErrCNNotAllowed.Code:           http.StatusForbidden,
	authority.ErrKeyTooWeak.Code:             http.StatusBadRequest,
	authority.ErrKeyTypeNotAllowed.Code:      http.StatusBadRequest,
	authority.ErrTTLNotAllowed.Code:          http.StatusBadRequest,
	authority.ErrProvisionerKind.Code:        http.StatusBadRequest,
	authority.ErrRenewalUnauthenticated.Code: http.StatusUnauthorized,
}

// domain errors in the order they are checked.
var domainStatus = []struct {
	err    error
	status int
	code   string
}{
	{signer.ErrOverloaded, http.StatusTooManyRequests, "overloaded"},
	{authority.ErrRateLimited, http.StatusTooManyRequests, "rate_limited"},
	{signer.ErrUnavailable, http.StatusServiceUnavailable, "signer_unavailable"},
	{signer.ErrInsecure, http.StatusServiceUnavailable, "signer_refused"},
	{authority.ErrInvalidRequest, http.StatusBadRequest, "bad_request"},
	{authority.ErrBadCSR, http.StatusBadRequest, "bad_csr"},
	{authority.ErrUnauthenticated, http.StatusUnauthorized, "unauthorized"},
	{authority.ErrForbidden, http.StatusForbidden, "forbidden"},
	{authority.ErrNotFound, http.StatusNotFound, "not_found"},
	{authority.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{authority.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	{cluster.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{cluster.ErrNoLeader, http.StatusServiceUnavailable, "no_leader"},
	{cluster.ErrTimeout, http.StatusServiceUnavailable, "unavailable"},
	{cluster.ErrInvalid, http.StatusBadRequest, "bad_request"},
	{cluster.ErrShutdown, http.StatusServiceUnavailable, "shutting_down"},
}

// fail writes err as a JSON error with the status it maps to, and reports
// the refusal.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := s.classify(r, err)
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		retry := "1"
		if rl := (*authority.RateLimitError)(nil); errors.As(err, &rl) {
			retry = strconv.Itoa(rl.RetryAfterSeconds())
		}
		w.Header().Set("Retry-After", retry)
	}
	if s.Refused != nil {
		s.Refused(r, status, code, msg)
	}
	setOutcome(r, code)
	writeError(w, status, code, msg)
}

// classify maps an error to status, code and message.
func (s *Server) classify(r *http.Request, err error) (int, string, string) {
	var re *requestError
	var fe *fsm.Error
	switch {
	case errors.As(err, &re):
		return re.status, re.code, re.msg
	case errors.As(err, &fe):
		st, ok := fsmStatus[fe.Code]
		if !ok {
			st = http.StatusConflict
		}
		return st, fe.Code, fe.Message
	}
	for _, d := range domainStatus {
		if errors.Is(err, d.err) {
			return d.status, d.code, err.Error()
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

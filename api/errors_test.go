package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// Every error a client can be answered with, and its status and code:
// what the API answered before errors carried their kind.
var errorStatuses = []struct {
	err    error
	status int
	code   string
}{
	{fsm.ErrTokenInvalid, 401, "token_invalid"},
	{fsm.ErrTokenExpired, 401, "token_expired"},
	{fsm.ErrTokenUsed, 409, "token_used"},
	{fsm.ErrNameNotAllowed, 403, "san_not_allowed"},
	{fsm.ErrSerialExists, 409, "serial_exists"},
	{fsm.ErrConflict, 409, "conflict"},
	{fsm.ErrAuthorityUnknown, 503, "authority_unknown"},
	{fsm.ErrTokenRevoked, 401, "token_revoked"},
	{fsm.ErrTokenUnknown, 404, "token_unknown"},
	{fsm.ErrCertUnknown, 404, "certificate_unknown"},
	{fsm.ErrCertRevoked, 403, "certificate_revoked"},
	{fsm.ErrCertExpired, 403, "certificate_expired"},
	{fsm.ErrCertRenewed, 409, "certificate_renewed"},
	{fsm.ErrVersionMismatch, 409, "version_mismatch"},
	{fsm.ErrProvisioner, 400, "provisioner_unknown"},
	{fsm.ErrNotFoundAdmin, 404, "admin_unknown"},
	{fsm.ErrUpgrading, 503, "upgrade_in_progress"},
	{fsm.ErrMalformed, 400, "malformed_command"},
	{fsm.ErrLastAdmin, 409, "last_admin"},
	{fsm.ErrAdminInactive, 403, "admin_inactive"},
	{fsm.Refusal("from_a_newer_release", "refused"), 409, "from_a_newer_release"},

	{authority.ErrCNNotAllowed, 403, "cn_not_allowed"},
	{authority.ErrKeyTooWeak, 400, "key_too_weak"},
	{authority.ErrKeyTypeNotAllowed, 400, "key_type_not_allowed"},
	{authority.ErrTTLNotAllowed, 400, "ttl_not_allowed"},
	{authority.ErrProvisionerKind, 400, "provisioner_kind"},
	{authority.ErrRenewalUnauthenticated, 401, "renewal_unauthenticated"},

	{signer.ErrOverloaded, 429, "overloaded"},
	{authority.ErrRateLimited, 429, "rate_limited"},
	{signer.ErrUnavailable, 503, "signer_unavailable"},
	{signer.ErrInsecure, 503, "signer_refused"},
	{authority.ErrInvalidRequest, 400, "bad_request"},
	{authority.ErrBadCSR, 400, "bad_csr"},
	{authority.ErrUnauthenticated, 401, "unauthorized"},
	{authority.ErrForbidden, 403, "forbidden"},
	{authority.ErrNotFound, 404, "not_found"},
	{authority.ErrTooLarge, 413, "too_large"},
	{authority.ErrUnavailable, 503, "unavailable"},
	{cluster.ErrTooLarge, 413, "too_large"},
	{cluster.ErrNoLeader, 503, "no_leader"},
	{cluster.ErrTimeout, 503, "unavailable"},
	{cluster.ErrInvalid, 400, "bad_request"},
	{cluster.ErrShutdown, 503, "shutting_down"},

	{badRequest("x"), 400, "bad_request"},
	{tooManyStreams("x"), 429, "too_many_streams"},

	// Errors that are not refusals.
	{cluster.ErrForbidden, 500, "internal"},
	{cluster.ErrNotLeader, 500, "internal"},
	{signer.ErrBadURI, 500, "internal"},
	{errors.New("disk on fire"), 500, "internal"},
	{context.DeadlineExceeded, 503, "unavailable"},
	{context.Canceled, 503, "canceled"},
}

func quietServer() *Server {
	return &Server{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestErrorsMapToTheirStatus(t *testing.T) {
	s := quietServer()
	r := httptest.NewRequest("GET", "/", nil)
	for _, tt := range errorStatuses {
		wrapped := fmt.Errorf("%w: detail", tt.err)
		for _, err := range []error{tt.err, wrapped} {
			status, code, msg := s.classify(r, err)
			if status != tt.status || code != tt.code {
				t.Errorf("%v: %d %s, want %d %s", err, status, code, tt.status, tt.code)
			}
			if status < 500 && msg != err.Error() {
				t.Errorf("%v: message %q, want the error's text", err, msg)
			}
		}
	}
}

// The innermost code answers: the authority's "unavailable" that wraps a
// signer's overload is the overload, as when the API checked the signer's
// errors first.
func TestTheInnermostCodeAnswers(t *testing.T) {
	s := quietServer()
	r := httptest.NewRequest("GET", "/", nil)
	for _, tt := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("%w: %w", authority.ErrUnavailable, fmt.Errorf("%w: 8 in flight", signer.ErrOverloaded)), 429, "overloaded"},
		{fmt.Errorf("%w: %w", authority.ErrUnavailable, signer.ErrUnavailable), 503, "signer_unavailable"},
		{fmt.Errorf("%w: %w", authority.ErrUnavailable, signer.ErrInsecure), 503, "signer_refused"},
		{fmt.Errorf("%w: %w", authority.ErrUnavailable, signer.ErrBadURI), 503, "unavailable"},
		{fmt.Errorf("%w: %w", authority.ErrUnavailable, authority.ErrCRLUnavailable), 503, "unavailable"},
		{fmt.Errorf("%w: %w", cluster.ErrTimeout, context.DeadlineExceeded), 503, "unavailable"},
		{fmt.Errorf("%w: %w", cluster.ErrTimeout, context.Canceled), 503, "unavailable"},
	} {
		status, code, _ := s.classify(r, tt.err)
		if status != tt.status || code != tt.code {
			t.Errorf("%v: %d %s, want %d %s", tt.err, status, code, tt.status, tt.code)
		}
	}
}

// fail writes the JSON error, with Retry-After on 429 and 503: the
// refusal's own when it has one, in whole seconds, else 1.
func TestFailWritesRetryAfter(t *testing.T) {
	s := quietServer()
	limited := authority.ErrRateLimited.With("too many renewals")
	limited.RetryAfter = 2100 * time.Millisecond
	for _, tt := range []struct {
		err   error
		retry string
	}{
		{limited, "3"},
		{fmt.Errorf("renew: %w", limited), "3"},
		{cluster.ErrNoLeader, "1"},
		{signer.ErrOverloaded, "1"},
		{authority.ErrNotFound, ""},
		{errors.New("bug"), ""},
	} {
		w := httptest.NewRecorder()
		s.fail(w, httptest.NewRequest("GET", "/", nil), tt.err)
		if got := w.Header().Get("Retry-After"); got != tt.retry {
			t.Errorf("%v: Retry-After %q, want %q", tt.err, got, tt.retry)
		}
		var body ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code == "" ||
			w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%v: body %q (%v)", tt.err, w.Body, err)
		}
		if w.Code == http.StatusInternalServerError && body.Error.Message != "internal error" {
			t.Errorf("%v: a 500 says %q", tt.err, body.Error.Message)
		}
	}
}

package api

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
	"github.com/quorumca/quorumca/signer"
)

// Bodies that are not what an endpoint takes are refused with a JSON 400
// (413 when too large) before anything is asked of the authority.
func TestMalformedBodies(t *testing.T) {
	bad := []struct {
		name, body string
		status     int
		code, msg  string
	}{
		{"not JSON", `{"csr": `, 400, "bad_request", "request body is not valid JSON"},
		{"empty", ``, 400, "bad_request", "request body is not valid JSON"},
		{"unknown field", `{"nonsense": true}`, 400, "bad_request", `unknown field "nonsense"`},
		{"wrong type", "", 400, "bad_request", "expected"}, // made from the route's body
		{"two bodies", `{} {}`, 400, "bad_request", "unexpected data after the JSON body"},
		{"array", `[]`, 400, "bad_request", ""},
		{"too large", `{"csr": "` + strings.Repeat("A", maxSignBody) + `"}`, 413, "too_large", "request body exceeds 65536 bytes"},
	}
	for _, rt := range routes {
		if rt.body == "" {
			continue
		}
		for _, b := range bad {
			ts := newTestServer(t)
			body := b.body
			switch b.name {
			case "empty":
				body = " " // no body at all is a renewal without a CSR
			case "wrong type":
				body = wrongType(t, rt.body)
			case "too large":
				if strings.HasSuffix(rt.path, "/devices") { // an allow-list upload
					body = `{"ids": ["` + strings.Repeat("A", maxDevicesBody) + `"]}`
					b.msg = fmt.Sprintf("request body exceeds %d bytes", maxDevicesBody)
				}
			}
			w := ts.serve(request{method: rt.method, path: rt.path, body: body, token: tokAdmin})
			what := rt.name() + " with " + b.name
			if w.Code != b.status {
				t.Errorf("%s: %d, want %d: %s", what, w.Code, b.status, w.Body)
				continue
			}
			code, msg := errorReply(t, what, w)
			if code != b.code || !strings.Contains(msg, b.msg) {
				t.Errorf("%s: %s %q, want %s %q", what, code, msg, b.code, b.msg)
			}
			if rt.calls != "" && ts.ca.called(rt.calls) {
				t.Errorf("%s: %s was called", what, rt.calls)
			}
		}
	}
}

// wrongType is body with its first field's value of another JSON type.
func wrongType(t *testing.T, body string) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(m))
	if _, ok := m[keys[0]].(string); ok {
		m[keys[0]] = 7
	} else {
		m[keys[0]] = "seven"
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// Fields the handlers parse themselves are refused with what is wrong.
func TestMalformedFields(t *testing.T) {
	for _, tt := range []struct {
		method, path, body, token, msg string
	}{
		{"POST", "/v1/sign", `{"csr": "PEM"}`, "", `fields "csr" and either "token" or`},
		{"POST", "/v1/sign", `{"csr": "PEM", "token": "t", "provisioner": "factory"}`, "", `fields "csr" and either "token" or`},
		{"POST", "/v1/sign", `{"csr": "PEM", "token": "t", "ttl": "forever"}`, "", `field "ttl"`},
		{"DELETE", "/v1/admin/provisioners/p?force=maybe", "", tokAdmin, "force: true or false"},
		{"GET", "/v1/admin/provisioners/p/devices?limit=0", "", tokAdmin, "limit: a positive number"},
		{"POST", "/v1/sign", `{"csr": "PEM", "token": "t", "ttl": "-1h"}`, "", `field "ttl"`},
		{"POST", "/v1/admin/tokens", `{"sans": ["a"], "ttl": "1y"}`, tokAdmin, `field "ttl"`},
		{"POST", "/v1/admin/admins", `{"name": "n", "role": "admin", "ttl": "0s"}`, tokAdmin, `field "ttl"`},
		{"POST", "/v1/admin/provisioners", `{"name": "p", "policy": {"default_ttl": "1d"}}`, tokAdmin, "policy.default_ttl"},
		{"POST", "/v1/admin/provisioners", `{"name": "p", "policy": {"renew_grace": "x"}}`, tokAdmin, "policy.renew_grace"},
		{"PUT", "/v1/admin/provisioners/p", `{"name": "q", "version": 1}`, tokAdmin, "cannot be renamed"},
		{"PUT", "/v1/admin/provisioners/p", `{"name": "p"}`, tokAdmin, "the version you read is required"},
		{"PUT", "/v1/admin/provisioners/p", `{"version": 1, "policy": {"max_ttl": "x"}}`, tokAdmin, "policy.max_ttl"},
		{"POST", "/v1/admin/authorities", `{"name": "a", "root_ttl": "x"}`, tokAdmin, `field "ttl"`},
		{"POST", "/v1/admin/authorities", `{"name": "a", "ttl": "x"}`, tokAdmin, `field "ttl"`},
		{"POST", "/v1/admin/authorities/a/rotate", `{"ttl": "x"}`, tokAdmin, `field "ttl"`},
		{"PATCH", "/v1/admin/authorities/a", `{"crl": {"validity": "x"}}`, tokAdmin, `"crl.validity"`},
		{"PATCH", "/v1/admin/authorities/a", `{"crl": {"refresh": "-2h"}}`, tokAdmin, `"crl.refresh"`},
		{"POST", "/v1/admin/authorities/a/root-crl", `{"crl": "not PEM"}`, tokAdmin, `a PEM "X509 CRL"`},
		{"POST", "/v1/admin/authorities/a/root-crl", `{"crl": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}`, tokAdmin, `a PEM "X509 CRL"`},
		{"PUT", "/v1/admin/authorities/a/ocsp-responder", `{"key": "k", "ttl": "x"}`, tokAdmin, `field "ttl"`},
		{"GET", "/v1/admin/tokens?limit=0", "", tokAdmin, "limit: 1-1000"},
		{"GET", "/v1/admin/tokens?limit=1001", "", tokAdmin, "limit: 1-1000"},
		{"GET", "/v1/admin/tokens?cursor=%25%25", "", tokAdmin, "cursor: not a cursor"},
		{"GET", "/v1/admin/certs?limit=x", "", tokAdmin, "limit: 1-1000"},
		{"GET", "/v1/admin/certs?expires_after=tomorrow", "", tokAdmin, "expires_after: not an RFC 3339 time"},
		{"GET", "/v1/admin/certs?expires_before=2026-13-01", "", tokAdmin, "expires_before: not an RFC 3339 time"},
		{"GET", "/v1/admin/audit?after=-1", "", tokAdmin, "after: a sequence number"},
		{"GET", "/v1/admin/audit?limit=1001", "", tokAdmin, "limit: 1-1000"},
		{"GET", "/v1/admin/audit?limit=x&follow=true", "", tokAdmin, "limit: 1-1000"},
	} {
		what := tt.method + " " + tt.path + " " + tt.body
		ts := newTestServer(t)
		w := ts.serve(request{method: tt.method, path: tt.path, body: tt.body, token: tt.token})
		if w.Code != 400 {
			t.Errorf("%s: %d, want 400: %s", what, w.Code, w.Body)
			continue
		}
		if code, msg := errorReply(t, what, w); code != "bad_request" || !strings.Contains(msg, tt.msg) {
			t.Errorf("%s: %s %q, want bad_request %q", what, code, msg, tt.msg)
		}
		for _, c := range ts.ca.calls {
			if c != "AuthenticateAdmin" {
				t.Errorf("%s: called %s", what, c)
			}
		}
	}
}

// Admin endpoints take an admin credential whose role allows them: no
// credential or an unknown one is 401, a role below the route's 403, and
// the authority is not asked to do anything.
func TestAdminRolesAndPermissions(t *testing.T) {
	allowed := map[authority.Permission][]string{
		authority.PermRead:        {tokAdmin, tokOperator, tokAuditor, tokRecovery},
		authority.PermOperate:     {tokAdmin, tokOperator},
		authority.PermConfigure:   {tokAdmin},
		authority.PermCreateAdmin: {tokAdmin, tokRecovery},
	}
	for _, rt := range routes {
		if !rt.admin {
			continue
		}
		for _, tok := range []string{"", "qcat_unknown", tokAdmin, tokOperator, tokAuditor, tokRecovery} {
			if rt.path == "/v1/revoke" && tok == "" {
				continue // without a token, the holder's own revocation
			}
			ts := newTestServer(t)
			w := ts.serve(request{method: rt.method, path: rt.path, body: rt.body, token: tok})
			what := fmt.Sprintf("%s as %q", rt.name(), tok)
			switch {
			case tok == "" || tok == "qcat_unknown":
				if w.Code != 401 {
					t.Errorf("%s: %d, want 401", what, w.Code)
				} else if code, _ := errorReply(t, what, w); code != "unauthorized" {
					t.Errorf("%s: code %s", what, code)
				}
			case slices.Contains(allowed[rt.perm], tok):
				if w.Code != rt.status {
					t.Errorf("%s: %d, want %d: %s", what, w.Code, rt.status, w.Body)
				}
				continue
			default:
				if w.Code != 403 {
					t.Errorf("%s: %d, want 403: %s", what, w.Code, w.Body)
				} else if code, _ := errorReply(t, what, w); code != "forbidden" {
					t.Errorf("%s: code %s", what, code)
				}
			}
			if rt.calls != "" && ts.ca.called(rt.calls) {
				t.Errorf("%s: refused, yet %s was called", what, rt.calls)
			}
		}
	}
}

// A credential the authority refuses, or cannot check now, is answered as
// the authority says: a withdrawn admin is 401, a node that cannot catch up
// with the leader 503 with Retry-After.
func TestAdminAuthenticationErrors(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("%w: admin credential revoked or expired", authority.ErrUnauthenticated), 401, "unauthorized"},
		{fmt.Errorf("%w: local state did not catch up", cluster.ErrNoLeader), 503, "no_leader"},
		{fsm.ErrAdminInactive, 403, "admin_inactive"},
	} {
		for _, peer := range []*x509.Certificate{nil, adminCert} {
			ts := newTestServer(t)
			ts.ca.errs["AuthenticateAdmin"], ts.ca.errs["AuthenticateAdminCert"] = tt.err, tt.err
			tok := tokAdmin
			if peer != nil {
				tok = ""
			}
			w := ts.serve(request{method: "GET", path: "/v1/admin/whoami", token: tok, peer: peer})
			if code, _ := errorReply(t, tt.code, w); w.Code != tt.status || code != tt.code {
				t.Errorf("%v: %d %s, want %d %s", tt.err, w.Code, code, tt.status, tt.code)
			}
			if (tt.status == 503) != (w.Header().Get("Retry-After") == "1") {
				t.Errorf("%v: Retry-After %q", tt.err, w.Header().Get("Retry-After"))
			}
		}
	}
	// A certificate that is not an admin's is no credential.
	ts := newTestServer(t)
	w := ts.serve(request{method: "GET", path: "/v1/admin/whoami", peer: &x509.Certificate{Subject: pkix.Name{CommonName: "device"}}})
	if w.Code != 401 {
		t.Errorf("a device certificate as admin: %d", w.Code)
	}
}

// errorCases are refusals of every kind, as the authority or the cluster
// would return them, with the status, code and Retry-After they get.
func errorCases() []struct {
	err    error
	status int
	code   string
	retry  string
} {
	limited := authority.ErrRateLimited.With("too many renewals for the lineage")
	limited.RetryAfter = 2500 * time.Millisecond
	return []struct {
		err    error
		status int
		code   string
		retry  string
	}{
		{fmt.Errorf("%w: serial must be 1-64 hex digits", authority.ErrInvalidRequest), 400, "bad_request", ""},
		{fmt.Errorf("%w: signature: bad", authority.ErrBadCSR), 400, "bad_csr", ""},
		{fsm.ErrProvisioner.With("unknown provisioner p"), 400, "provisioner_unknown", ""},
		{authority.ErrRenewalUnauthenticated, 401, "renewal_unauthenticated", ""},
		{fsm.ErrTokenInvalid.With("token is not valid: bad signature"), 401, "token_invalid", ""},
		{fmt.Errorf("%w: role %q may not do this", authority.ErrForbidden, "auditor"), 403, "forbidden", ""},
		{fsm.ErrNameNotAllowed, 403, "san_not_allowed", ""},
		{fmt.Errorf("%w: no authority named %q", authority.ErrNotFound, "x"), 404, "not_found", ""},
		{fsm.ErrCertUnknown, 404, "certificate_unknown", ""},
		{&errs.Error{Kind: errs.Stalled, Code: "timeout", Message: "stalled"}, 408, "timeout", ""},
		{fsm.ErrCertRenewed, 409, "certificate_renewed", ""},
		{fsm.ErrLastAdmin, 409, "last_admin", ""},
		{fsm.Refusal("from_a_newer_release", "refused by a newer leader"), 409, "from_a_newer_release", ""},
		{fmt.Errorf("%w: 7 MiB", cluster.ErrTooLarge), 413, "too_large", ""},
		{limited, 429, "rate_limited", "3"},
		{fmt.Errorf("sign: %w", fmt.Errorf("%w: 8 in flight", signer.ErrOverloaded)), 429, "overloaded", "1"},
		{fmt.Errorf("%w after 7s: dial", cluster.ErrNoLeader), 503, "no_leader", "1"},
		{fmt.Errorf("%w: %w", authority.ErrUnavailable, signer.ErrUnavailable), 503, "signer_unavailable", "1"},
		{fsm.ErrUpgrading, 503, "upgrade_in_progress", "1"},
		{cluster.ErrShutdown, 503, "shutting_down", "1"},
		{fmt.Errorf("%w: %w", cluster.ErrTimeout, errors.New("context deadline exceeded")), 503, "unavailable", "1"},
		{fmt.Errorf("kms: %w", context.DeadlineExceeded), 503, "unavailable", "1"},
		{errors.New("disk on fire"), 500, "internal", ""},
	}
}

// Whatever the authority or the cluster answers, every route answers it
// with the status and code of its kind, as a JSON error, with Retry-After
// on 429 and 503, and only an error that is no refusal is a 500, which
// says nothing of it.
func TestEveryErrorKindThroughEveryRoute(t *testing.T) {
	for _, rt := range routes {
		switch rt.path {
		case "/v1/admin/whoami": // asks nothing but the credential
			continue
		case "/v1/admin/snapshot": // its body has begun: TestSnapshotSaveFailure
			continue
		}
		for _, tt := range errorCases() {
			ts := newTestServer(t)
			ts.ca.fail, ts.cluster.err = tt.err, tt.err
			if strings.HasPrefix(rt.path, "/v1/admin/provisioners/") && rt.method != "PUT" && errors.Is(tt.err, fsm.ErrProvisioner) {
				tt.status = 404 // named in the path: TestMissingProvisionerInThePathIsNotFound
			}
			w := ts.serve(request{method: rt.method, path: rt.path, body: rt.body, token: tokAdmin})
			what := fmt.Sprintf("%s failing with %v", rt.name(), tt.err)
			if w.Code != tt.status {
				t.Errorf("%s: %d, want %d: %s", what, w.Code, tt.status, w.Body)
				continue
			}
			code, msg := errorReply(t, what, w)
			if code != tt.code {
				t.Errorf("%s: code %s, want %s", what, code, tt.code)
			}
			switch {
			case tt.status == 500 && msg != "internal error":
				t.Errorf("%s: a 500 says %q", what, msg)
			case tt.status < 500 && msg != tt.err.Error():
				t.Errorf("%s: message %q, want %q", what, msg, tt.err.Error())
			}
			if got := w.Header().Get("Retry-After"); got != tt.retry {
				t.Errorf("%s: Retry-After %q, want %q", what, got, tt.retry)
			}
		}
	}
}

// Refusals are reported to Refused (the node logs them); only what is no
// refusal is logged as a failure.
func TestRefusalsAreReported(t *testing.T) {
	ts := newTestServer(t)
	var got []string
	ts.Refused = func(r *http.Request, status int, code, msg string) {
		got = append(got, fmt.Sprintf("%s %d %s", r.URL.Path, status, code))
	}
	ts.ca.errs["Cert"] = fsm.ErrCertUnknown
	ts.serve(request{method: "GET", path: "/v1/certs/0a"})
	ts.ca.errs["Cert"] = errors.New("disk on fire")
	ts.serve(request{method: "GET", path: "/v1/certs/0b"})
	want := []string{"/v1/certs/0a 404 certificate_unknown", "/v1/certs/0b 500 internal"}
	if !slices.Equal(got, want) {
		t.Errorf("refused %v, want %v", got, want)
	}
	if !strings.Contains(ts.logs.String(), "request failed") || strings.Count(ts.logs.String(), "request failed") != 1 {
		t.Errorf("logs: %s", ts.logs)
	}
}

// Requests nothing serves are JSON errors too.
func TestUnroutedRequests(t *testing.T) {
	ts := newTestServer(t)
	w := ts.serve(request{method: "GET", path: "/v1/nothing"})
	if code, _ := errorReply(t, "unknown path", w); w.Code != 404 || code != "not_found" {
		t.Errorf("unknown path: %d %s", w.Code, code)
	}
	w = ts.serve(request{method: "DELETE", path: "/v1/roots"})
	if code, _ := errorReply(t, "wrong method", w); w.Code != 405 || code != "method_not_allowed" || !strings.Contains(w.Header().Get("Allow"), "GET") {
		t.Errorf("wrong method: %d %s %q", w.Code, code, w.Header().Get("Allow"))
	}
}

// A provisioner named in the path that does not exist is 404, not the 400
// an unknown provisioner in a body is.
func TestMissingProvisionerInThePathIsNotFound(t *testing.T) {
	for _, rq := range []request{
		{method: "GET", path: "/v1/admin/provisioners/nope", token: tokAdmin},
		{method: "DELETE", path: "/v1/admin/provisioners/nope", token: tokAdmin},
	} {
		ts := newTestServer(t)
		ts.ca.fail = fsm.ErrProvisioner.With("no provisioner nope")
		w := ts.serve(rq)
		if code, msg := errorReply(t, rq.path, w); w.Code != 404 || code != "provisioner_unknown" || msg != "no provisioner nope" {
			t.Errorf("%s %s: %d %s %q", rq.method, rq.path, w.Code, code, msg)
		}
	}
}

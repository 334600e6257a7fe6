package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/quorumca/quorumca/internal/testwait"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
)

// Long responses need a real server: they set deadlines on the connection.

func (ts *testServer) start(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(ts.handler)
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, ctx context.Context, srv *httptest.Server, method, path, token string, body io.Reader) *http.Response {
	t.Helper()
	r, err := http.NewRequestWithContext(ctx, method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+token)
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// refusedWith checks that resp is a JSON error of status and code.
func refusedWith(t *testing.T, what string, resp *http.Response, status int, code string) string {
	t.Helper()
	defer resp.Body.Close()
	var b ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || resp.StatusCode != status || b.Error.Code != code {
		t.Fatalf("%s: %d %+v (%v), want %d %s", what, resp.StatusCode, b, err, status, code)
	}
	return b.Error.Message
}

// A follow streams the entries after ?after= as JSON lines, then each new
// one as it is applied, until the client goes.
func TestAuditFollow(t *testing.T) {
	ts := newTestServer(t)
	ts.ca.changed = make(chan struct{})
	ts.ca.appendAudit("issue")
	ts.ca.appendAudit("token_create")
	srv := ts.start(t)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	resp := call(t, ctx, srv, "GET", "/v1/admin/audit?follow=true&after=0&limit=1", tokAuditor, nil)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("follow: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() fsm.AuditEntry {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("the follow ended: %v", lines.Err())
		}
		var e fsm.AuditEntry
		if err := json.Unmarshal(lines.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", lines.Text(), err)
		}
		return e
	}
	// Pages of one (limit=1) until the log is read, then new entries.
	if e := next(); e.Seq != 1 || e.Command != "issue" {
		t.Fatalf("first entry %+v", e)
	}
	if e := next(); e.Seq != 2 {
		t.Fatalf("second entry %+v", e)
	}
	ts.ca.appendAudit("revoke")
	ts.ca.notify()
	if e := next(); e.Seq != 3 || e.Command != "revoke" {
		t.Fatalf("new entry %+v", e)
	}
	cancel()

	// Without ?after=, only what is appended from now on.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	resp = call(t, ctx, srv, "GET", "/v1/admin/audit?follow=true", tokAuditor, nil)
	defer resp.Body.Close()
	lines = bufio.NewScanner(resp.Body)
	ts.ca.appendAudit("admin_create")
	ts.ca.notify()
	if e := next(); e.Seq != 4 {
		t.Fatalf("follow from now: %+v", e)
	}
}

// Follows are bounded per credential and per node, and a failed read ends
// one.
func TestAuditFollowLimits(t *testing.T) {
	ts := newTestServer(t)
	ts.Streams = StreamLimits{MaxFollowsPerAdmin: 1, MaxFollows: 2}
	ts.handler = ts.Routes()
	ts.ca.changed = make(chan struct{})
	srv := ts.start(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	first := call(t, ctx, srv, "GET", "/v1/admin/audit?follow=true", tokAuditor, nil)
	defer first.Body.Close()
	msg := refusedWith(t, "a second follow of one credential", call(t, ctx, srv, "GET", "/v1/admin/audit?follow=true", tokAuditor, nil), 429, "too_many_streams")
	if !strings.Contains(msg, "this credential already follows the audit log 1 times") {
		t.Fatalf("message %q", msg)
	}
	second := call(t, ctx, srv, "GET", "/v1/admin/audit?follow=true", tokOperator, nil)
	defer second.Body.Close()
	if second.StatusCode != 200 {
		t.Fatalf("another credential's follow: %d", second.StatusCode)
	}
	msg = refusedWith(t, "a third follow on the node", call(t, ctx, srv, "GET", "/v1/admin/audit?follow=true", tokAdmin, nil), 429, "too_many_streams")
	if !strings.Contains(msg, "this node already serves 2 audit follows") {
		t.Fatalf("message %q", msg)
	}

	// A read that fails ends the follow, and frees its slot.
	ts.ca.setFail(cluster.ErrShutdown)
	ts.ca.notify()
	for _, resp := range []*http.Response{first, second} {
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
	}
	ts.ca.setFail(nil)
	third := call(t, ctx, srv, "GET", "/v1/admin/audit?follow=true", tokAdmin, nil)
	defer third.Body.Close()
	if third.StatusCode != 200 {
		t.Fatalf("a follow once the others ended: %d", third.StatusCode)
	}
}

// A snapshot upload replaces the state; a refused one is the cluster's
// 400; one whose client stops sending is cut off with 408.
func TestSnapshotRestore(t *testing.T) {
	ts := newTestServer(t)
	ts.Streams = StreamLimits{WriteTimeout: 300 * time.Millisecond}
	ts.handler = ts.Routes()
	srv := ts.start(t)
	ctx := t.Context()

	resp := call(t, ctx, srv, "POST", "/v1/admin/snapshot", tokAdmin, strings.NewReader("the whole state"))
	resp.Body.Close()
	if resp.StatusCode != 204 || string(ts.cluster.restored) != "the whole state" {
		t.Fatalf("restore: %d %q", resp.StatusCode, ts.cluster.restored)
	}
	refusedWith(t, "an operator", call(t, ctx, srv, "POST", "/v1/admin/snapshot", tokOperator, strings.NewReader("x")), 403, "forbidden")

	ts.cluster.err = fmt.Errorf("%w: not a quorumca snapshot", cluster.ErrInvalid)
	msg := refusedWith(t, "garbage", call(t, ctx, srv, "POST", "/v1/admin/snapshot", tokAdmin, strings.NewReader("garbage")), 400, "bad_request")
	if msg != "cluster: invalid request: not a quorumca snapshot" {
		t.Fatalf("message %q", msg)
	}
	ts.cluster.err = nil

	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("the beginning")) }() // then nothing
	msg = refusedWith(t, "a stalled upload", call(t, ctx, srv, "POST", "/v1/admin/snapshot", tokAdmin, pr), 408, "timeout")
	if !strings.Contains(msg, "the snapshot upload stalled") {
		t.Fatalf("message %q", msg)
	}
}

// Snapshot transfers are bounded per node.
func TestSnapshotLimits(t *testing.T) {
	ts := newTestServer(t)
	ts.Streams = StreamLimits{MaxSnapshots: 1}
	ts.handler = ts.Routes()
	ts.cluster.writing, ts.cluster.release = make(chan struct{}), make(chan struct{})
	srv := ts.start(t)
	ctx := t.Context()

	done := make(chan string)
	go func() {
		resp := call(t, ctx, srv, "GET", "/v1/admin/snapshot", tokOperator, nil)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- string(b)
	}()
	<-ts.cluster.writing
	for _, rq := range []struct{ method, token string }{{"GET", tokOperator}, {"POST", tokAdmin}} {
		msg := refusedWith(t, rq.method+" during a download", call(t, ctx, srv, rq.method, "/v1/admin/snapshot", rq.token, strings.NewReader("x")), 429, "too_many_streams")
		if !strings.Contains(msg, "1 snapshot transfers") {
			t.Fatalf("message %q", msg)
		}
	}
	close(ts.cluster.release)
	if got := <-done; got != "snapshot bytes" {
		t.Fatalf("download: %q", got)
	}
}

// A snapshot that fails once its answer has begun cannot be answered with
// an error: it is logged, and the download is cut short.
func TestSnapshotSaveFailure(t *testing.T) {
	ts := newTestServer(t)
	ts.cluster.err = fmt.Errorf("%w: leader lost", cluster.ErrNoLeader)
	w := ts.serve(request{method: "GET", path: "/v1/admin/snapshot", token: tokOperator})
	if w.Code == 500 || w.Header().Get("Content-Type") != "application/octet-stream" || w.Body.Len() != 0 {
		t.Fatalf("failed download: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if !strings.Contains(ts.logs.String(), "snapshot save failed") {
		t.Fatalf("not logged: %s", ts.logs)
	}
}

// Metrics: per route and per operation outcome, behind a token if one is
// set.
func TestMetrics(t *testing.T) {
	ts := newTestServer(t)
	ts.Registry, ts.MetricsToken = prometheus.NewRegistry(), "m-token"
	var refused []string
	ts.Refused = func(r *http.Request, status int, code, _ string) {
		refused = append(refused, fmt.Sprint(status, " ", code))
	}
	ts.handler = ts.Routes()

	ts.ca.errs["Sign"] = fsm.ErrTokenUsed
	ts.serve(request{method: "POST", path: "/v1/sign", body: `{"csr": "x", "token": "y"}`})
	ts.ca.errs["Sign"] = nil
	ts.serve(request{method: "POST", path: "/v1/sign", body: `{"csr": "x", "token": "y"}`})

	for _, path := range []string{"/v1/metrics", "/metrics"} {
		w := ts.serve(request{method: "GET", path: path})
		if code, _ := errorReply(t, path, w); w.Code != 401 || code != "unauthorized" || w.Header().Get("WWW-Authenticate") == "" {
			t.Fatalf("%s without the token: %d %s", path, w.Code, code)
		}
		w = ts.serve(request{method: "GET", path: path, token: "m-token"})
		body := w.Body.String()
		for _, want := range []string{
			`quorumca_operations_total{operation="issue",outcome="token_used"} 1`,
			`quorumca_operations_total{operation="issue",outcome="ok"} 1`,
			`quorumca_http_request_duration_seconds_count{code="409",route="POST /v1/sign"} 1`,
			`quorumca_ocsp_responses_total{status="tryLater"} 0`,
		} {
			if w.Code != 200 || !strings.Contains(body, want) {
				t.Fatalf("%s: %d, no %s in\n%s", path, w.Code, want, body)
			}
		}
	}
	if want := "409 token_used,401 unauthorized,401 unauthorized"; strings.Join(refused, ",") != want {
		t.Fatalf("refused %v, want %s", refused, want)
	}

	// Without a token, anyone may read them.
	ts = newTestServer(t)
	ts.Registry = prometheus.NewRegistry()
	ts.handler = ts.Routes()
	if w := ts.serve(request{method: "GET", path: "/metrics"}); w.Code != 200 {
		t.Fatalf("open metrics: %d", w.Code)
	}
}

// A handler that panics answers 500 as JSON, and the node goes on.
func TestPanicsAreAnswered(t *testing.T) {
	ts := newTestServer(t)
	ts.CA = panickingCA{ts.ca}
	ts.handler = ts.Routes()
	w := ts.serve(request{method: "GET", path: "/v1/roots"})
	if code, msg := errorReply(t, "panic", w); w.Code != 500 || code != "internal" || msg != "internal error" {
		t.Fatalf("panic: %d %s %q", w.Code, code, msg)
	}
	if !strings.Contains(ts.logs.String(), "panic serving request") {
		t.Fatalf("not logged: %s", ts.logs)
	}
	// The cleanup's check for panics is for handlers under test, not this.
	ts.logs = new(testwait.Buffer)
}

type panickingCA struct{ *fakeCA }

func (panickingCA) Roots(context.Context) ([][]byte, error) { panic("boom") }

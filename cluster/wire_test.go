package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// A verdict crosses the forwarding RPC as {"code", "message"}, the form
// every release reads and writes, and comes back with its kind; the
// cluster's own failures never pass for verdicts.
func TestVerdictsKeepTheirWireForm(t *testing.T) {
	used := fsm.ErrTokenUsed.With("token t1 has already been used")

	b, err := json.Marshal(resultOf(7, used))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"index":7,"error":{"code":"token_used","message":"token t1 has already been used"}}`; string(b) != want {
		t.Fatalf("batch result %s, want %s", b, want)
	}
	var back batchResult
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	got := fsm.Refusal(back.Error.Code, back.Error.Message)
	if !errors.Is(got, fsm.ErrTokenUsed) || !fsm.IsRefusal(got) || got.Kind != errs.Conflict || got.Message != used.Message {
		t.Fatalf("decoded %+v", got)
	}
	if newer := fsm.Refusal("from_a_newer_release", "x"); newer.Kind != errs.Conflict {
		t.Fatalf("an unknown code decodes as %+v, want a conflict", newer)
	}

	for _, tt := range []struct {
		err         error
		retry       bool
		code        string
		wantRefusal bool
	}{
		{ErrNoLeader, true, "not_leader", false},
		{fmt.Errorf("%w: x", ErrTimeout), true, "not_leader", false},
		{fmt.Errorf("%w: unknown command", ErrInvalid), false, codeInternal, false},
		{fsm.ErrUpgrading, false, fsm.ErrUpgrading.Code, true},
	} {
		r := resultOf(0, tt.err)
		if r.Retry != tt.retry || r.Error == nil || r.Error.Code != tt.code || fsm.IsRefusal(tt.err) != tt.wantRefusal {
			t.Errorf("%v: %+v", tt.err, r)
		}
	}

	// The single-write RPC: 409 {"error": {...}} both ways.
	rec := httptest.NewRecorder()
	(&Cluster{}).reply(rec, httptest.NewRequest("POST", pathApply, nil), nil, used)
	if want := `{"error":{"code":"token_used","message":"token t1 has already been used"}}` + "\n"; rec.Code != http.StatusConflict || rec.Body.String() != want {
		t.Fatalf("reply %d %s, want 409 %s", rec.Code, rec.Body, want)
	}
	resp := &http.Response{StatusCode: rec.Code, Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
		Request: httptest.NewRequest("POST", "https://leader"+pathApply, nil)}
	err = (&Cluster{}).rpcResult(resp, &struct{}{})
	if !errors.Is(err, fsm.ErrTokenUsed) || !fsm.IsRefusal(err) || err.Error() != used.Message {
		t.Fatalf("rpcResult: %v", err)
	}
}

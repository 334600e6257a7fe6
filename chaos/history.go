package chaos

import (
	"bufio"
	"encoding/json"
	"os"
	"sync"
	"time"
)

// Operation kinds in the history.
const (
	OpEnroll     = "enroll"      // a device trades its token and a CSR for a certificate
	OpRenew      = "renew"       // a device renews over mTLS with its current certificate
	OpRevoke     = "revoke"      // an admin revokes a device's current certificate
	OpReplay     = "replay"      // a used token with a new key: must be refused (4xx)
	OpReplaySame = "replay-same" // a used token with the key it enrolled: the same certificate, or 4xx
	OpNemesis    = "nemesis"     // a fault injected or healed
	// A node asked directly, as it comes back from a fault, about a
	// revocation acknowledged before: Code is "record:<status>" or
	// "ocsp:<status>"; revoked or no answer, never good.
	OpStatusProbe = "status-probe"
	// An ACME client's whole order (new order, challenge, finalize,
	// download); Account names its account.
	OpACMEOrder = "acme-order"
	// A signed ACME request sent again as it was: its nonce was accepted
	// once, so it must be refused (badNonce).
	OpACMEReplay = "acme-replay"
)

// isLoad reports whether op is part of the workload's load: not a fault
// event, a replay or a probe.
func isLoad(op Op) bool {
	return op.Kind != OpNemesis && op.Kind != OpReplay && op.Kind != OpReplaySame && op.Kind != OpStatusProbe && op.Kind != OpACMEReplay
}

// Outcomes. A request that failed after it may have reached a node
// (timeout, dropped connection, 5xx) is unknown: it may or may not have
// taken effect. Only ok outcomes are promises the cluster must keep.
const (
	OK      = "ok"
	Fail    = "fail"
	Unknown = "unknown"
)

// Op is one line of the history: a request and its response, or a
// nemesis event. Times are seconds since the run started.
type Op struct {
	Seq     int64   `json:"seq"`
	Kind    string  `json:"op"`
	Device  string  `json:"device,omitempty"`
	Start   float64 `json:"start"`
	End     float64 `json:"end"`
	Outcome string  `json:"outcome"`
	Status  int     `json:"status,omitempty"`
	Code    string  `json:"code,omitempty"`  // the API's error code, or a transport reason
	Error   string  `json:"error,omitempty"` // message, for failures
	TokenID string  `json:"token_id,omitempty"`
	Account string  `json:"account,omitempty"` // ACME: the account's requester name
	Via     string  `json:"via,omitempty"`     // enroll, renew: "est" when not the JSON API
	Serial  string  `json:"serial,omitempty"`  // issued (enroll, renew, replays) or revoked
	Renews  string  `json:"renews,omitempty"`  // renew: the serial presented
	Cert    string  `json:"cert,omitempty"`    // PEM of an acknowledged certificate

	// Nemesis events.
	Fault  string `json:"fault,omitempty"`
	Target string `json:"target,omitempty"`
	Phase  string `json:"phase,omitempty"` // inject, heal, healthy
}

// history records ops in memory and as JSON lines in a file.
type history struct {
	start time.Time

	mu  sync.Mutex
	ops []Op
	f   *os.File
	w   *bufio.Writer
	enc *json.Encoder
	err error
}

func newHistory(path string, start time.Time) (*history, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	h := &history{start: start, f: f, w: bufio.NewWriterSize(f, 1<<20)}
	h.enc = json.NewEncoder(h.w)
	return h, nil
}

// since is t in seconds since the run started.
func (h *history) since(t time.Time) float64 { return t.Sub(h.start).Seconds() }

// add records op and returns it with its sequence number.
func (h *history) add(op Op) Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Seq = int64(len(h.ops))
	h.ops = append(h.ops, op)
	if err := h.enc.Encode(op); err != nil && h.err == nil {
		h.err = err
	}
	return op
}

// snapshot is a copy of the ops so far.
func (h *history) snapshot() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

func (h *history) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.w.Flush(); err != nil && h.err == nil {
		h.err = err
	}
	if err := h.f.Close(); err != nil && h.err == nil {
		h.err = err
	}
	return h.err
}

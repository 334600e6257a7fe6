package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/backoff"
	"github.com/quorumca/quorumca/internal/errs"
)

// Writes from any node: a follower forwards to the leader over the internal
// RPC (HTTPS on the API port, mutual TLS with node certificates), retrying
// with jitter while an election runs, up to the hold timeout. Commands are
// idempotent, so a retry after an ambiguous failure (leadership lost mid-
// commit, a dropped connection) cannot apply twice.

const (
	pathApply      = "/v1/internal/apply" // one write; nodes before batched forwarding send these
	pathApplyBatch = "/v1/internal/apply-batch"
	pathJoin       = "/v1/internal/join"
	pathFormat     = "/v1/internal/format" // the newest log format this node reads
	pathIndex      = "/v1/internal/index"
	pathWait       = "/v1/internal/wait"

	pathNodeCert = "/v1/internal/node-cert"

	// propagateTimeout bounds how long Propagate waits for one member that
	// stays in contact with the leader.
	propagateTimeout = 3 * time.Second

	maxRPCBody = 8 << 20
)

// MaxCommandBytes bounds one command's encoded envelope: what one forwarding
// RPC carries, less room for its framing.
const MaxCommandBytes = maxRPCBody - 64<<10

// ErrTooLarge: a command is larger than MaxCommandBytes.
var ErrTooLarge = errs.New(errs.TooLarge, "too_large", "cluster: command too large")

// errUnknownPath: the other node runs a binary without this RPC.
var errUnknownPath = errors.New("cluster: the member does not serve this path")

// errRetry marks failures after which the same call may be tried again.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }
func (e errRetry) Unwrap() error { return e.err }

func retryable(err error) bool {
	var r errRetry
	return errors.As(err, &r)
}

// translate maps raft's errors to ours at the package boundary.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrEnqueueTimeout):
		return errRetry{fmt.Errorf("%w: %v", ErrNotLeader, err)}
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	}
	return timedOut(err)
}

// timedOut marks a context's end inside the cluster (a forwarded call, a
// read-index round, a queued proposal) as ErrTimeout: "not now", never a
// bug. The context's error stays in the chain.
func timedOut(err error) error {
	if errors.Is(err, ErrTimeout) || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrTimeout, err)
}

// Apply commits env through the leader and returns the FSM's verdict: nil,
// or a refusal (fsm.IsRefusal).
// A follower's writes go through its forwarding batcher.
func (c *Cluster) Apply(ctx context.Context, env *fsm.Envelope) error {
	if n := encodedSize(env); n > MaxCommandBytes {
		return fmt.Errorf("%w: %s command of %d bytes, at most %d", ErrTooLarge, fsm.CommandName(env.Type), n, MaxCommandBytes)
	}
	var encoded []byte
	remote := func(ctx context.Context) error {
		if encoded == nil {
			var err error
			if encoded, err = env.Encode(); err != nil {
				return err
			}
		}
		r := c.fwd.propose(ctx, encoded, 0) // the leader encodes it again
		if r.err != nil {
			return r.err
		}
		if err, ok := r.resp.(error); ok && err != nil {
			return err
		}
		return nil
	}
	local := func(ctx context.Context) error {
		_, err := c.applyLocal(ctx, env)
		return err
	}
	return timedOut(retryLeader(ctx, c, remote, local))
}

// encodedSize bounds the size of env's binary encoding (fsm.Envelope.Encode)
// without encoding it: the fixed fields take at most 64 bytes.
func encodedSize(env *fsm.Envelope) int {
	n := 64 + len(env.ID) + len(env.Payload)
	if env.Origin != nil {
		n += len(env.Origin.Actor) + len(env.Origin.Remote)
	}
	return n
}

type applyReply struct {
	Index uint64 `json:"index"`
}

// applyLocal proposes on this node, which must be the leader. The leader's
// clock is stamped into the entry here.
func (c *Cluster) applyLocal(ctx context.Context, env *fsm.Envelope) (uint64, error) {
	if c.raft.State() != raft.Leader {
		return 0, errRetry{ErrNotLeader}
	}
	if err := fsm.CheckProposal(env); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if c.formatTerm.Load() != c.raft.CurrentTerm() {
		return 0, errRetry{fmt.Errorf("%w: log format not set yet in this term", ErrNotLeader)}
	}
	e := *env
	format := c.logFormat()
	if need := e.Format(); need > format {
		if !c.formatKnown.Load() {
			return 0, errRetry{fmt.Errorf("%w: log format not known yet in this term", ErrNotLeader)}
		}
		return 0, fsm.ErrUpgrading // bare: clients see its message, here or through the RPC
	}
	e.Time = c.cfg.Now().UnixNano()
	data, err := e.EncodeFor(format)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	outcome := "ok"
	defer func() {
		c.applyTime.WithLabelValues(fsm.CommandName(e.Type), outcome).Observe(time.Since(start).Seconds())
	}()
	r := c.batch.propose(ctx, data, format)
	if r.err != nil {
		outcome = "failed"
		return 0, translate(r.err)
	}
	if err, ok := r.resp.(error); ok && err != nil {
		outcome = "rejected"
		return r.index, err
	}
	return r.index, nil
}

// Barrier waits until this node has applied every write the leader had
// acknowledged when Barrier was called (a read index, as in the Raft paper).
// Concurrent barriers of a node share read-index rounds (readindex.go).
func (c *Cluster) Barrier(ctx context.Context) error {
	idx, err := c.readIndex(ctx)
	if err != nil {
		return timedOut(err)
	}
	if c.fsm.AppliedIndex() >= idx {
		return nil // as a rule on the leader, and on a follower that keeps up
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.HoldTimeout)
	defer cancel()
	if err := c.fsm.WaitApplied(wctx, idx); err != nil {
		return fmt.Errorf("%w: local state did not catch up: %v", ErrNoLeader, err)
	}
	return nil
}

type indexReply struct {
	Index uint64 `json:"index"`
}

// leaderIndex confirms leadership with a quorum, then returns the read
// index: the leader's applied index. Every write acknowledged so far is
// applied on the leader (an apply returns after the FSM ran it), and, past
// the once-per-term barrier, so is every write of earlier leaders. The
// commit index would not do: it counts entries the FSM never sees (no-ops,
// barriers, configurations), so a follower could wait for it forever, and a
// new leader's commit index may trail earlier terms' entries (Raft thesis
// 6.4).
func (c *Cluster) leaderIndex() (uint64, error) {
	if c.raft.State() != raft.Leader {
		return 0, errRetry{ErrNotLeader}
	}
	if term := c.raft.CurrentTerm(); c.readyTerm.Load() != term {
		if err := c.raft.Barrier(c.cfg.HoldTimeout).Error(); err != nil {
			return 0, translate(err)
		}
		c.readyTerm.Store(term)
	}
	idx := c.fsm.AppliedIndex()
	if err := c.raft.VerifyLeader().Error(); err != nil {
		return 0, translate(err)
	}
	return idx, nil
}

// callLeader runs local if this node leads, or posts body to the leader's
// path, retrying retryable failures until the hold timeout.
// body is sent as JSON ([]byte as it is), encoded only if it is forwarded.
func callLeader(ctx context.Context, c *Cluster, path string, body any, out any, local func(context.Context) error) error {
	var encoded []byte
	remote := func(ctx context.Context) error {
		if encoded == nil {
			var err error
			if encoded, err = encodeBody(body); err != nil {
				return err
			}
		}
		return c.forward(ctx, path, encoded, out)
	}
	return timedOut(retryLeader(ctx, c, remote, local))
}

// retryLeader runs local if this node leads, or remote, retrying retryable
// failures until the hold timeout.
func retryLeader(ctx context.Context, c *Cluster, remote, local func(context.Context) error) error {
	deadline := time.Now().Add(c.cfg.HoldTimeout)
	b := backoff.New(10*time.Millisecond, 500*time.Millisecond)
	for {
		var err error
		if c.raft.State() == raft.Leader {
			err = local(ctx)
		} else {
			err = remote(ctx)
		}
		if !retryable(err) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s: %v", ErrNoLeader, c.cfg.HoldTimeout, err)
		}
		if !b.Wait(ctx) {
			return ctx.Err()
		}
	}
}

func encodeBody(body any) ([]byte, error) {
	if b, ok := body.([]byte); ok {
		return b, nil
	}
	return json.Marshal(body)
}

// forward sends one RPC to the current leader.
func (c *Cluster) forward(ctx context.Context, path string, body []byte, out any) error {
	_, id := c.raft.LeaderWithID()
	if id == "" {
		return errRetry{ErrNoLeader}
	}
	if c.raft.State() == raft.Shutdown {
		return ErrShutdown
	}
	n, err := c.fsm.Node(string(id))
	if err != nil {
		return errRetry{fmt.Errorf("%w: leader %s has no known address yet", ErrNoLeader, id)}
	}
	return c.post(ctx, "https://"+n.APIAddr+path, body, out)
}

// post makes one internal RPC, authenticated by this node's certificate,
// to a peer that shows a node certificate, and decodes its reply.
func (c *Cluster) post(ctx context.Context, url string, body []byte, out any) error {
	return c.postAs(ctx, "", url, body, out)
}

// postAs is post to the node named id: an answer from another node's
// certificate (an address taken over) is refused. "" takes any node.
func (c *Cluster) postAs(ctx context.Context, id, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errRetry{fmt.Errorf("forward to %s: %w", url, err)}
	}
	defer resp.Body.Close()
	if id != "" && (resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 || resp.TLS.PeerCertificates[0].Subject.CommonName != id) {
		return fmt.Errorf("%s answered with another node's certificate, not %s's", url, id)
	}
	return c.rpcResult(resp, out)
}

// rpcResult decodes an internal RPC reply into out, or into the error the
// other node reported.
func (c *Cluster) rpcResult(resp *http.Response, out any) error {
	url := resp.Request.URL.String()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRPCBody))
	if err != nil {
		return errRetry{fmt.Errorf("forward to %s: %w", url, err)}
	}
	if resp.StatusCode == http.StatusOK {
		return json.Unmarshal(data, out)
	}
	var e struct {
		Error rpcError `json:"error"`
	}
	if json.Unmarshal(data, &e) != nil || e.Error.Code == "" {
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%w: %s", errUnknownPath, url)
		}
		return errRetry{fmt.Errorf("forward to %s: status %d", url, resp.StatusCode)}
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s", errUnknownPath, url)
	case http.StatusMisdirectedRequest, http.StatusServiceUnavailable:
		return errRetry{fmt.Errorf("%w: %s", ErrNotLeader, e.Error.Message)}
	case http.StatusForbidden:
		return fmt.Errorf("%w: %s", ErrForbidden, e.Error.Message)
	case http.StatusConflict:
		return fsm.Refusal(e.Error.Code, e.Error.Message)
	case http.StatusBadRequest:
		return fmt.Errorf("%w: %s", ErrInvalid, e.Error.Message)
	}
	return fmt.Errorf("forward to %s: %s: %s", url, e.Error.Code, e.Error.Message)
}

// Handler serves the internal RPC. Mount it at /v1/internal/.
func (c *Cluster) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathApply, c.serve(func(ctx context.Context, body []byte) (any, error) {
		env, err := fsm.DecodeEnvelope(body)
		if err != nil {
			return nil, errBadRPC{err}
		}
		if err := checkForwarded(ctx, env); err != nil {
			return nil, err
		}
		idx, err := c.applyLocal(ctx, env)
		return applyReply{Index: idx}, err
	}))
	mux.HandleFunc("POST "+pathApplyBatch, c.serve(c.serveApplyBatch))
	mux.HandleFunc("POST "+pathFormat, c.serve(func(context.Context, []byte) (any, error) {
		return formatReply{Format: fsm.LogFormat}, nil
	}))
	mux.HandleFunc("POST "+pathIndex, c.serve(func(ctx context.Context, _ []byte) (any, error) {
		idx, err := c.served.index(ctx)
		return indexReply{Index: idx}, err
	}))
	mux.HandleFunc("POST "+pathWait, c.serve(func(ctx context.Context, body []byte) (any, error) {
		var req indexReply
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, errBadRPC{err}
		}
		wctx, cancel := context.WithTimeout(ctx, propagateTimeout)
		defer cancel()
		if err := c.fsm.WaitApplied(wctx, req.Index); err != nil {
			return nil, fmt.Errorf("%w: not applied %d yet", ErrNoLeader, req.Index)
		}
		return struct{}{}, nil
	}))
	mux.HandleFunc("POST "+pathPropagate, c.serve(func(ctx context.Context, _ []byte) (any, error) {
		if !c.IsLeader() {
			return nil, errRetry{ErrNotLeader}
		}
		return c.propagateLocal(ctx, c.inContact)
	}))
	mux.HandleFunc("POST "+pathRemove, c.serve(func(ctx context.Context, body []byte) (any, error) {
		var req idRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, errBadRPC{err}
		}
		return struct{}{}, c.removeLocal(req.ID)
	}))
	mux.HandleFunc("POST "+pathTransfer, c.serve(func(ctx context.Context, body []byte) (any, error) {
		var req idRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, errBadRPC{err}
		}
		return struct{}{}, c.transferLocal(req.ID)
	}))
	mux.HandleFunc("POST "+pathRestore, c.serveRestore)
	mux.HandleFunc("POST "+pathNodeCert, c.serveNodeCert)
	mux.HandleFunc("POST "+pathNodeCertChallenge, c.serveChallenge)
	mux.HandleFunc("POST "+pathJoin, c.serveJoin)
	mux.HandleFunc("POST "+pathExtension+"{name}", func(w http.ResponseWriter, r *http.Request) {
		// The caller first: whoever is not a node learns nothing, not even
		// which names exist.
		if !c.authorized(r) {
			c.refuse(w, r, http.StatusForbidden, "forbidden", "a node certificate of this cluster is required")
			return
		}
		fn, ok := c.extensions.Load(r.PathValue("name"))
		if !ok {
			writeRPCError(w, http.StatusNotFound, "not_found", "no such internal RPC")
			return
		}
		c.serve(fn.(RPCFunc))(w, r)
	})
	// Anything else, as JSON like every other answer; to a caller that is
	// not a node, as every other internal path: which ones exist is none
	// of its business.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !c.authorized(r) {
			c.refuse(w, r, http.StatusForbidden, "forbidden", "a node certificate of this cluster is required")
			return
		}
		writeRPCError(w, http.StatusNotFound, "not_found", "no internal RPC "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// pathExtension prefixes the RPCs other packages serve (ServeRPC).
const pathExtension = "/v1/internal/x/"

// RPCFunc serves one internal RPC: the caller is a node of this cluster
// (CallerOf names it). Its result is sent as JSON; a refusal (fsm or
// errs) travels as {code, message}.
type RPCFunc func(ctx context.Context, body []byte) (any, error)

// ServeRPC registers an internal RPC of another package (the ACME nonce
// check), reached by Call.
func (c *Cluster) ServeRPC(name string, fn RPCFunc) { c.extensions.Store(name, fn) }

// CallerOf names the node that made the internal RPC served with ctx.
func CallerOf(ctx context.Context) string {
	id, _ := ctx.Value(callerKey{}).(string)
	return id
}

// Call makes the internal RPC name on the member id, once: body is sent as
// JSON, the reply decoded into out.
func (c *Cluster) Call(ctx context.Context, id, name string, body, out any) error {
	n, err := c.fsm.Node(id)
	if err != nil {
		return fmt.Errorf("%w: no member %s", ErrNoLeader, id)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return timedOut(c.postAs(ctx, id, "https://"+n.APIAddr+pathExtension+name, b, out))
}

// serveJoin adds a node to the cluster: asked by the node itself (its
// certificate names the id it joins as), or forwarded by a member.
func (c *Cluster) serveJoin(w http.ResponseWriter, r *http.Request) {
	c.serveWith(c.authorized, func(ctx context.Context, body []byte) (any, error) {
		var req joinRequest
		if err := json.Unmarshal(body, &req); err != nil || req.ID == "" || req.RaftAddr == "" {
			return nil, errBadRPC{fmt.Errorf("join needs id and raft_addr")}
		}
		if caller := r.TLS.PeerCertificates[0].Subject.CommonName; caller != req.ID && !c.isServer(caller) {
			return nil, fmt.Errorf("%w: node %q may join only as itself, not as %q", ErrForbidden, caller, req.ID)
		}
		return struct{}{}, c.join(ctx, req)
	})(w, r)
}

// isServer reports whether id is in this node's view of the configuration.
func (c *Cluster) isServer(id string) bool {
	servers, err := c.Servers()
	if err != nil {
		return false
	}
	for _, s := range servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

type errBadRPC struct{ err error }

func (e errBadRPC) Error() string { return e.err.Error() }

func (c *Cluster) serve(fn func(ctx context.Context, body []byte) (any, error)) http.HandlerFunc {
	return c.serveWith(c.authorized, fn)
}

func (c *Cluster) serveWith(auth func(*http.Request) bool, fn func(ctx context.Context, body []byte) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !auth(r) {
			c.refuse(w, r, http.StatusForbidden, "forbidden", "a node certificate of this cluster is required")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRPCBody))
		if err != nil {
			writeRPCError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		ctx := r.Context()
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			ctx = context.WithValue(ctx, callerKey{}, r.TLS.PeerCertificates[0].Subject.CommonName)
		}
		out, err := fn(ctx, body)
		c.reply(w, r, out, err)
	}
}

// callerKey carries, in an internal RPC's context, the node its
// certificate names.
type callerKey struct{}

// checkForwarded refuses what a node may not propose for another: a node
// announces itself only (a forged announcement could name another node's
// address, or a log format it does not read). The leader announces for
// others itself (healFormat), without forwarding.
func checkForwarded(ctx context.Context, env *fsm.Envelope) error {
	if env.Type != fsm.CmdNodeUpsert {
		return nil
	}
	var n fsm.Node
	if err := json.Unmarshal(env.Payload, &n); err != nil {
		return errBadRPC{fmt.Errorf("node announcement: %v", err)}
	}
	caller, _ := ctx.Value(callerKey{}).(string)
	if n.ID != caller {
		return errBadRPC{fmt.Errorf("node %q may announce only itself, not %q", caller, n.ID)}
	}
	if n.LogFormat < 0 || n.LogFormat > fsm.LogFormat {
		return errBadRPC{fmt.Errorf("node %s announces log format %d, not one of 0..%d", n.ID, n.LogFormat, fsm.LogFormat)}
	}
	return nil
}

// reply writes an internal RPC's result or error.
func (c *Cluster) reply(w http.ResponseWriter, r *http.Request, out any, err error) {
	var bad errBadRPC
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	case fsm.IsRefusal(err):
		writeRPCError(w, http.StatusConflict, errs.Of(err).Code, err.Error())
	case errors.As(err, &bad), errors.Is(err, ErrInvalid):
		writeRPCError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, ErrForbidden):
		c.refuse(w, r, http.StatusForbidden, "forbidden", err.Error())
	case retryable(err):
		writeRPCError(w, http.StatusMisdirectedRequest, "not_leader", err.Error())
	case errors.Is(err, ErrShutdown), errors.Is(err, ErrNoLeader), errors.Is(err, ErrTimeout):
		writeRPCError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	default:
		c.log.Error("internal rpc failed", "path", r.URL.Path, "err", err)
		writeRPCError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

// authorized: the caller shows a node certificate of this cluster.
func (c *Cluster) authorized(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && c.tls.verify(r.TLS.PeerCertificates[0]) == nil
}

// rpcError is an error on the wire between nodes: {"code", "message"},
// the form every release reads.
type rpcError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeRPCError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]rpcError{"error": {Code: code, Message: msg}})
}

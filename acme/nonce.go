package acme

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"sync"

	"github.com/quorumca/quorumca/internal/errs"
)

// Nonces: each node mints its own and is the only one that can accept
// them, so a nonce is accepted at most once in the whole cluster without a
// Raft write per request (Boulder's nonce service works so). A nonce names
// the node that minted it; a node that receives another's nonce asks that
// node, over the internal RPC, to redeem it. If that node is gone (a
// restart forgets every nonce it minted, its key changes), the client gets
// badNonce with a fresh nonce and retries, as RFC 8555 section 6.5 expects.
//
// A nonce is base64url of: the node name's length and bytes, a counter (8
// bytes), and an HMAC of both under a key of this process (8 bytes). A
// node keeps the last nonceWindow counters it minted; redeeming clears one,
// so a nonce is good once, until nonceWindow newer ones push it out.

const nonceWindow = 1 << 18 // 2 MiB of counters per node

// NonceRPC is the internal RPC that redeems a nonce at the node that
// minted it.
const NonceRPC = "acme-nonce"

// Caller makes an internal RPC on another node of the cluster.
type Caller interface {
	Call(ctx context.Context, node, name string, body, out any) error
}

// Nonces mints and redeems this node's nonces.
type Nonces struct {
	node string
	key  [32]byte
	peer Caller

	mu   sync.Mutex
	next uint64
	live []uint64 // live[c % nonceWindow] == c while nonce c is unused
}

// NewNonces makes node's nonce source; peer redeems other nodes' nonces.
func NewNonces(node string, peer Caller) *Nonces {
	n := &Nonces{node: node, peer: peer, next: 1, live: make([]uint64, nonceWindow)}
	rand.Read(n.key[:])
	return n
}

// Make mints a nonce.
func (n *Nonces) Make() string {
	n.mu.Lock()
	c := n.next
	n.next++
	n.live[c%nonceWindow] = c
	n.mu.Unlock()
	b := make([]byte, 0, 1+len(n.node)+16)
	b = append(b, byte(len(n.node)))
	b = append(b, n.node...)
	b = binary.BigEndian.AppendUint64(b, c)
	b = append(b, n.mac(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (n *Nonces) mac(b []byte) []byte {
	m := hmac.New(sha256.New, n.key[:])
	m.Write(b)
	return m.Sum(nil)[:8]
}

// parseNonce splits a nonce into the node that minted it and the rest.
func parseNonce(s string) (node string, raw []byte, ok bool) {
	if len(s) > 512 {
		return "", nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 1 || len(b) != 1+int(b[0])+16 {
		return "", nil, false
	}
	return string(b[1 : 1+b[0]]), b, true
}

// redeemLocal accepts one of this node's nonces once.
func (n *Nonces) redeemLocal(raw []byte) bool {
	l := 1 + int(raw[0])
	if !hmac.Equal(n.mac(raw[:l+8]), raw[l+8:]) {
		return false
	}
	c := binary.BigEndian.Uint64(raw[l : l+8])
	n.mu.Lock()
	defer n.mu.Unlock()
	if c == 0 || n.live[c%nonceWindow] != c {
		return false
	}
	n.live[c%nonceWindow] = 0
	return true
}

type nonceRequest struct {
	Nonce string `json:"nonce"`
}

type nonceReply struct {
	OK bool `json:"ok"`
}

// Redeem accepts a nonce once, cluster-wide: here if this node minted it,
// else at the node that did. Any failure is badNonce: the client retries
// with the fresh nonce of the answer.
func (n *Nonces) Redeem(ctx context.Context, nonce string) error {
	node, raw, ok := parseNonce(nonce)
	if !ok {
		return problem(errs.Invalid, ProbBadNonce, "the nonce is malformed")
	}
	if node == n.node {
		if n.redeemLocal(raw) {
			return nil
		}
		return problem(errs.Invalid, ProbBadNonce, "the nonce is unknown, used or too old")
	}
	var out nonceReply
	if err := n.peer.Call(ctx, node, NonceRPC, nonceRequest{Nonce: nonce}, &out); err != nil {
		return problem(errs.Invalid, ProbBadNonce, "the nonce's node %s could not be asked; use the new nonce", node)
	}
	if !out.OK {
		return problem(errs.Invalid, ProbBadNonce, "the nonce is unknown, used or too old")
	}
	return nil
}

// ServeRedeem is the NonceRPC: another node redeems a nonce minted here.
func (n *Nonces) ServeRedeem(_ context.Context, body []byte) (any, error) {
	var in nonceRequest
	if json.Unmarshal(body, &in) != nil {
		return nonceReply{}, nil
	}
	node, raw, ok := parseNonce(in.Nonce)
	return nonceReply{OK: ok && node == n.node && n.redeemLocal(raw)}, nil
}

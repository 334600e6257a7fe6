package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/atomicfile"
	"github.com/quorumca/quorumca/internal/backoff"
)

// Break-glass admin recovery. When every admin credential is revoked or
// expired, nobody can create one through the API, by design. Recovery then
// takes the two things a network attacker or an operator credential does
// not give: write access to a node's data dir (the node stopped), and the
// console where the token is printed. 'quorumca operator recover-admin'
// writes the token's hash into the data dir; the node, at its next start,
// commits a recovery credential through the log (audited as
// "node:<name> recover-admin"); the token may create one admin, then is
// used up, and expires within authority.RecoveryTTL anyway.

// recoveryFile is the request in the data dir; the node removes it once the
// credential is committed or refused.
const recoveryFile = "recover-admin.json"

type recoveryRequest struct {
	ID        string    `json:"id"`
	Hash      []byte    `json:"hash"` // SHA-256 of the token; the token is only printed
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// RequestAdminRecovery prepares a recovery credential in the data dir of a
// stopped node and returns its token, to be shown once. The node commits
// the credential when it next starts; the request must be applied before
// it expires (authority.RecoveryTTL after now).
func RequestAdminRecovery(dataDir string, now time.Time) (token string, expires time.Time, err error) {
	state := filepath.Join(dataDir, "state.db")
	if _, err := os.Stat(state); err != nil {
		return "", time.Time{}, fmt.Errorf("%s is not a node's data dir: %w", dataDir, err)
	}
	if err := fsm.CheckOffline(state); err != nil {
		return "", time.Time{}, err
	}
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return "", time.Time{}, err
	}
	token, hash := authority.NewRecoverySecret()
	req := recoveryRequest{ID: "recovery-" + hex.EncodeToString(id), Hash: hash,
		CreatedAt: now.UTC(), ExpiresAt: now.Add(authority.RecoveryTTL).UTC()}
	b, err := json.Marshal(req)
	if err != nil {
		return "", time.Time{}, err
	}
	if err := atomicfile.Write(filepath.Join(dataDir, recoveryFile), b, 0o600); err != nil {
		return "", time.Time{}, err
	}
	return token, req.ExpiresAt, nil
}

// startRecovery commits a pending recovery request in the background, once
// the cluster accepts writes.
func (n *Node) startRecovery() {
	path := filepath.Join(n.cfg.DataDir, recoveryFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var req recoveryRequest
	if err == nil {
		err = json.Unmarshal(b, &req)
	}
	if err != nil || req.ID == "" || len(req.Hash) != 32 {
		n.log.Error("admin recovery: unreadable request removed", "component", "audit", "file", path, "err", err)
		os.Remove(path)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.applyRecovery(path, req)
	}()
}

func (n *Node) applyRecovery(path string, req recoveryRequest) {
	ctx := authority.WithOrigin(n.ctx, "node:"+n.cfg.NodeName+" recover-admin", "")
	for {
		if !n.cfg.Now().Before(req.ExpiresAt) {
			n.log.Error("admin recovery: the request expired before the cluster took it; run recover-admin again",
				"component", "audit", "id", req.ID, "expires_at", req.ExpiresAt)
			os.Remove(path)
			return
		}
		err := n.ca.RecoverAdmin(ctx, req.ID, req.Hash, req.ExpiresAt)
		switch {
		case err == nil:
			os.Remove(path)
			n.log.Warn("admin recovery credential committed: it may create one admin", "component", "audit",
				"id", req.ID, "expires_at", req.ExpiresAt)
			return
		case fsm.IsRefusal(err) && !errors.Is(err, fsm.ErrUpgrading):
			n.log.Error("admin recovery refused; request removed", "component", "audit", "id", req.ID, "err", err)
			os.Remove(path)
			return
		}
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("admin recovery: will retry", "err", err)
		if !backoff.Sleep(ctx, time.Second) {
			return
		}
	}
}

// warnWithoutUsableAdmin says, on the leader, when no admin-role credential
// is usable any more: then only recovery can create one.
func (n *Node) warnWithoutUsableAdmin(ctx context.Context) {
	as, err := n.fsm.Admins()
	if err != nil {
		return
	}
	now := n.cfg.Now()
	for _, a := range as {
		if a.Role == authority.RoleAdmin && a.Usable(now) {
			return
		}
	}
	n.log.WarnContext(ctx, "no usable admin: every admin credential is revoked, expired or expires within a day; "+
		"renew admin certificates, create an admin, or recover with 'quorumca operator recover-admin'")
}

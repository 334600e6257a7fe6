package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/backoff"
	"github.com/quorumca/quorumca/internal/errs"
)

// Operator actions on the Raft group, run on the leader.

const (
	pathRemove   = "/v1/internal/remove"
	pathTransfer = "/v1/internal/transfer"
	pathRestore  = "/v1/internal/restore"
)

// ErrInvalid: an operator request that cannot be carried out as asked.
var ErrInvalid = errs.New(errs.Invalid, "bad_request", "cluster: invalid request")

// Peer is one member of the Raft configuration.
type Peer struct {
	ID       string `json:"id"`
	Address  string `json:"raft_addr"`
	APIAddr  string `json:"api_addr,omitempty"`
	Suffrage string `json:"suffrage"` // voter or nonvoter
	Leader   bool   `json:"leader"`
}

// Peers lists the Raft configuration as this node knows it.
func (c *Cluster) Peers() ([]Peer, error) {
	servers, err := c.Servers()
	if err != nil {
		return nil, translate(err)
	}
	_, leader := c.raft.LeaderWithID()
	out := make([]Peer, 0, len(servers))
	for _, s := range servers {
		p := Peer{ID: string(s.ID), Address: string(s.Address), Suffrage: "voter", Leader: s.ID == leader}
		if s.Suffrage != raft.Voter {
			p.Suffrage = "nonvoter"
		}
		if n, err := c.fsm.Node(p.ID); err == nil {
			p.APIAddr = n.APIAddr
		}
		out = append(out, p)
	}
	return out, nil
}

type idRequest struct {
	ID string `json:"id"`
}

// RemovePeer removes a server from the Raft configuration. The last voter
// cannot be removed.
func (c *Cluster) RemovePeer(ctx context.Context, id string) error {
	body, _ := json.Marshal(idRequest{id})
	var out struct{}
	return callLeader(ctx, c, pathRemove, body, &out, func(ctx context.Context) error { return c.removeLocal(id) })
}

func (c *Cluster) removeLocal(id string) error {
	if c.raft.State() != raft.Leader {
		return errRetry{ErrNotLeader}
	}
	servers, err := c.Servers()
	if err != nil {
		return translate(err)
	}
	found, voters := false, 0
	for _, s := range servers {
		found = found || string(s.ID) == id
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	_, known := c.fsm.Node(id)
	switch {
	case !found && known != nil:
		return fmt.Errorf("%w: no server %q in the configuration", ErrInvalid, id)
	case voters == 1 && id == c.cfg.NodeID:
		return fmt.Errorf("%w: %s is the last voter", ErrInvalid, id)
	}
	// First void the node's certificates (every node refuses those issued
	// before now), then take it out of the configuration: a removed node
	// cannot write, renew its certificate or rejoin on what it had.
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.HoldTimeout)
	defer cancel()
	if err := c.propose(ctx, fsm.CmdNodeRemove, fsm.NodeRemove{ID: id}); errors.Is(err, fsm.ErrUpgrading) {
		c.log.Warn("removing server: its node certificates stay valid until they expire, until every server runs this release", "id", id)
	} else if err != nil {
		return err
	}
	if !found {
		c.log.Info("node certificates voided; it was no server", "id", id)
		return nil
	}
	c.log.Info("removing server", "id", id)
	return translate(c.raft.RemoveServer(raft.ServerID(id), 0, c.cfg.HoldTimeout).Error())
}

// TransferLeadership hands leadership to the server id, or to the most
// up-to-date voter when id is empty.
func (c *Cluster) TransferLeadership(ctx context.Context, id string) error {
	body, _ := json.Marshal(idRequest{id})
	var out struct{}
	return callLeader(ctx, c, pathTransfer, body, &out, func(ctx context.Context) error { return c.transferLocal(id) })
}

func (c *Cluster) transferLocal(id string) error {
	if c.raft.State() != raft.Leader {
		return errRetry{ErrNotLeader}
	}
	if id == "" {
		return translateTransfer(c.raft.LeadershipTransfer().Error())
	}
	servers, err := c.Servers()
	if err != nil {
		return translate(err)
	}
	for _, s := range servers {
		if string(s.ID) == id {
			if s.Suffrage != raft.Voter {
				return fmt.Errorf("%w: %s is not a voter", ErrInvalid, id)
			}
			return translateTransfer(c.raft.LeadershipTransferToServer(s.ID, s.Address).Error())
		}
	}
	return fmt.Errorf("%w: no server %q in the configuration", ErrInvalid, id)
}

// translateTransfer keeps a transfer's own failure from being retried as
// "not leader": leadership did not move, and the caller should hear why.
func translateTransfer(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, raft.ErrNotLeader) {
		return errRetry{ErrNotLeader}
	}
	return fmt.Errorf("%w: leadership transfer: %v", ErrInvalid, err)
}

// Snapshot file format: one JSON header line, then the state database.
type snapshotHeader struct {
	Format       string `json:"format"` // "quorumca-snapshot-1"
	AppliedIndex uint64 `json:"applied_index"`
	Size         int64  `json:"size"`
	SHA256       string `json:"sha256"` // of the database bytes
	Node         string `json:"node"`
	Time         string `json:"time"`
}

const snapshotFormat = "quorumca-snapshot-1"

// WriteSnapshot writes a consistent, checksummed copy of the whole state:
// this node first catches up with the leader, then copies its database.
func (c *Cluster) WriteSnapshot(ctx context.Context, w io.Writer) error {
	if err := c.Barrier(ctx); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(c.cfg.Dir, "snapshot-save-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	idx := c.fsm.AppliedIndex()
	n, err := c.fsm.WriteTo(io.MultiWriter(tmp, h))
	if err != nil {
		return err
	}
	hdr, _ := json.Marshal(snapshotHeader{Format: snapshotFormat, AppliedIndex: idx, Size: n,
		SHA256: hex.EncodeToString(h.Sum(nil)), Node: c.cfg.NodeID, Time: time.Now().UTC().Format(time.RFC3339)})
	if _, err := w.Write(append(hdr, '\n')); err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err = io.Copy(w, tmp)
	return err
}

// RestoreSnapshot replaces the whole cluster's state with a snapshot file
// (disaster recovery onto a fresh set of nodes). The checksum is verified
// before anything changes; the leader installs it through Raft, keeping the
// current cluster's membership.
func (c *Cluster) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	tmp, err := os.CreateTemp(c.cfg.Dir, "snapshot-restore-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	hdr, err := readSnapshot(r, tmp)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(c.cfg.HoldTimeout)
	for {
		if c.raft.State() == raft.Leader {
			return c.restoreLocal(hdr, tmp)
		}
		err := c.forwardRestore(ctx, hdr, tmp)
		if !retryable(err) || time.Now().After(deadline) {
			return err
		}
		if !backoff.New(50*time.Millisecond, time.Second).Wait(ctx) {
			return ctx.Err()
		}
	}
}

// readSnapshot checks a snapshot file while copying its database to dst.
func readSnapshot(r io.Reader, dst *os.File) (*snapshotHeader, error) {
	line := make([]byte, 0, 512)
	var b [1]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("%w: snapshot: no header", ErrInvalid)
		}
		if b[0] == '\n' {
			break
		}
		if line = append(line, b[0]); len(line) > 4096 {
			return nil, fmt.Errorf("%w: snapshot: header too long", ErrInvalid)
		}
	}
	var hdr snapshotHeader
	if err := json.Unmarshal(line, &hdr); err != nil || hdr.Format != snapshotFormat {
		return nil, fmt.Errorf("%w: not a quorumca snapshot", ErrInvalid)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(dst, h), r)
	if err != nil {
		return nil, err
	}
	if n != hdr.Size || hex.EncodeToString(h.Sum(nil)) != hdr.SHA256 {
		return nil, fmt.Errorf("%w: snapshot checksum does not match: the file is damaged", ErrInvalid)
	}
	if _, err := dst.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return &hdr, nil
}

func (c *Cluster) restoreLocal(hdr *snapshotHeader, db *os.File) error {
	cfg := c.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return translate(err)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: hdr.AppliedIndex, Size: hdr.Size,
		Configuration: cfg.Configuration()}
	c.log.Warn("restoring the cluster from a snapshot", "from_node", hdr.Node, "taken", hdr.Time, "size", hdr.Size)
	if err := c.raft.Restore(meta, db, 0); err != nil {
		return translate(err)
	}
	return nil
}

// forwardRestore streams the verified snapshot to the leader, which checks
// it again.
func (c *Cluster) forwardRestore(ctx context.Context, hdr *snapshotHeader, db *os.File) error {
	_, id := c.raft.LeaderWithID()
	n, err := c.fsm.Node(string(id))
	if id == "" || err != nil {
		return errRetry{ErrNoLeader}
	}
	if _, err := db.Seek(0, io.SeekStart); err != nil {
		return err
	}
	head, _ := json.Marshal(hdr)
	body := io.MultiReader(bytes.NewReader(append(head, '\n')), db)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+n.APIAddr+pathRestore, body)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errRetry{err}
	}
	defer resp.Body.Close()
	return c.rpcResult(resp, &struct{}{})
}

// serveRestore is the leader's side of a forwarded restore: the body is a
// snapshot file, too large for the usual RPC limit.
func (c *Cluster) serveRestore(w http.ResponseWriter, r *http.Request) {
	if !c.authorized(r) {
		writeRPCError(w, http.StatusForbidden, "forbidden", "a node certificate of this cluster is required")
		return
	}
	if c.raft.State() != raft.Leader {
		writeRPCError(w, http.StatusMisdirectedRequest, "not_leader", "not the leader")
		return
	}
	tmp, err := os.CreateTemp(c.cfg.Dir, "snapshot-restore-*")
	if err != nil {
		writeRPCError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	hdr, err := readSnapshot(r.Body, tmp)
	if err == nil {
		err = c.restoreLocal(hdr, tmp)
	}
	c.reply(w, r, struct{}{}, err)
}

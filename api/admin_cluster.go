package api

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/internal/errs"
)

// Operator endpoints on the Raft group: peers, removal, leadership transfer,
// snapshot save and restore.

func (s *Server) listPeers(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := s.admin(w, r, authority.PermRead); !ok {
		return
	}
	peers, err := s.Operator.Peers()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"peers": peers})
}

func (s *Server) removePeer(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermOperate)
	if !ok {
		return
	}
	if err := s.Operator.RemovePeer(ctx, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) transferLeadership(w http.ResponseWriter, r *http.Request) {
	var req struct {
		To string `json:"to,omitempty"`
	}
	ctx, ok := s.adminDecode(w, r, authority.PermOperate, &req)
	if !ok {
		return
	}
	if err := s.Operator.TransferLeadership(ctx, req.To); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// saveSnapshot streams a consistent, checksummed copy of the whole state.
func (s *Server) saveSnapshot(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermOperate)
	if !ok {
		return
	}
	release, err := s.streams.snapshot("snapshot")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer release()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="quorumca-%s.snap"`, time.Now().UTC().Format("20060102T150405Z")))
	// Large states take a while: no overall deadline, one per write.
	sw := s.streamWriter(w)
	if err := sw.idle(); err != nil {
		return
	}
	if err := s.Operator.WriteSnapshot(ctx, sw); err != nil {
		s.Logger.Error("snapshot save failed", "err", err) // the body has begun: no error reply
		return
	}
	sw.finish()
}

// restoreSnapshot replaces the cluster's state with a saved snapshot:
// disaster recovery onto a fresh cluster. Admin only.
func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermConfigure)
	if !ok {
		return
	}
	release, err := s.streams.snapshot("snapshot_restore")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer release()
	// Large states take a while to upload and install: no overall
	// deadline; each read of the body gets its own, the reply a fresh one.
	sw := s.streamWriter(w)
	if sw.idle() != nil || sw.rc.SetReadDeadline(time.Time{}) != nil {
		return
	}
	err = s.Operator.RestoreSnapshot(ctx, &streamReader{r: r.Body, rc: sw.rc, timeout: sw.timeout})
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = refusal(errs.Stalled, "timeout", fmt.Sprintf("the snapshot upload stalled: no data for %s", sw.timeout))
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

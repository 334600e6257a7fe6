package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// auditPage is the reply of a list: a page of entries, and where the next
// page starts. Scripts written before paging read only "entries".
type auditPage struct {
	Entries []fsm.AuditEntry `json:"entries"`
	// More: the limit cut the page short; ask again with after=NextAfter.
	// Without more, NextAfter is the newest entry of the log, matching or
	// not: polling from there reads each entry once.
	More      bool   `json:"more"`
	NextAfter uint64 `json:"next_after"`
	// Checkpoint: entries up to it were cut by retention; the first kept
	// entry follows its hash. Sent with a page that starts at or before it.
	Checkpoint *fsm.AuditCheckpoint `json:"checkpoint,omitempty"`
}

// followEvery spaces a follower's reads: under a burst of changes it reads
// what arrived since its last read at most this often, not at every commit.
const followEvery = 100 * time.Millisecond

// audit lists one page of audit entries after a sequence number (?after=),
// filtered by command and actor, through the audit log's indexes. With
// ?follow=true it streams, as JSON lines, the entries after ?after= (or,
// without it, those appended from now on) as they are applied.
func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	admin, ctx, ok := s.admin(w, r, authority.PermRead)
	if !ok {
		return
	}
	q := r.URL.Query()
	f := fsm.AuditFilter{Command: q.Get("command"), Actor: q.Get("actor"), Limit: fsm.DefaultAuditLimit}
	after := q.Get("after")
	if after != "" {
		n, err := strconv.ParseUint(after, 10, 64)
		if err != nil {
			s.fail(w, r, badRequest("after: a sequence number"))
			return
		}
		f.After = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > fsm.MaxAuditLimit {
			s.fail(w, r, badRequest("limit: 1-1000"))
			return
		}
		f.Limit = n
	}
	if q.Get("follow") != "true" {
		p, err := s.CA.Audit(ctx, f)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if p.Entries == nil {
			p.Entries = []fsm.AuditEntry{}
		}
		writeJSON(w, http.StatusOK, auditPage{Entries: p.Entries, More: p.More, NextAfter: p.Next, Checkpoint: p.Checkpoint})
		return
	}
	release, err := s.streams.follow(admin.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer release()
	if after == "" {
		f.After, _ = s.CA.AuditHead() // new entries only
	}
	s.follow(ctx, w, f)
}

// follow streams entries matching f after f.After until the client goes,
// a write times out, or the node stops. Each read starts after the newest
// entry the previous one saw, so a follower reads every entry at most
// once and, when filtered, only the entries it sends.
func (s *Server) follow(ctx context.Context, w http.ResponseWriter, f fsm.AuditFilter) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	sw := s.streamWriter(w)
	if sw.idle() != nil {
		return
	}
	w.WriteHeader(http.StatusOK)
	if sw.Flush() != nil {
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for {
		applied := s.CA.AppliedIndex() // before reading: a change after the read ends the wait below
		read := time.Now()
		p, err := s.CA.Audit(ctx, f)
		if err != nil {
			if ctxAlive(ctx) {
				s.Logger.Error("audit follow: read failed", "err", err)
			}
			return
		}
		buf.Reset()
		for _, e := range p.Entries {
			_ = enc.Encode(e)
		}
		if buf.Len() > 0 {
			if _, err := sw.Write(buf.Bytes()); err != nil || sw.Flush() != nil {
				return // the client went away or stopped reading
			}
		}
		f.After = p.Next
		if p.More {
			continue // more are waiting
		}
		if s.CA.WaitForChange(ctx, applied) != nil {
			return // client gone or node stopping
		}
		if wait := followEvery - time.Since(read); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
	}
}

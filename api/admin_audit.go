package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// audit lists audit entries after a sequence number (?after=), filtered by
// command and actor. With ?follow=true it keeps the connection open and
// streams new entries as JSON lines as they are applied.
func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermRead)
	if !ok {
		return
	}
	q := r.URL.Query()
	f := fsm.AuditFilter{Command: q.Get("command"), Actor: q.Get("actor"), Limit: 100}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			s.fail(w, r, badRequest("after: a sequence number"))
			return
		}
		f.After = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.fail(w, r, badRequest("limit: 1-1000"))
			return
		}
		f.Limit = n
	}
	if q.Get("follow") != "true" {
		entries, err := s.CA.Audit(ctx, f)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if entries == nil {
			entries = []fsm.AuditEntry{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{}) // a follow lasts as long as the client wants
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for {
		entries, err := s.CA.Audit(ctx, f)
		if err != nil {
			return
		}
		for _, e := range entries {
			if enc.Encode(e) != nil {
				return
			}
			f.After = e.Seq
		}
		if rc.Flush() != nil {
			return
		}
		if len(entries) == f.Limit {
			continue // more are waiting
		}
		if s.CA.WaitForChange(ctx) != nil {
			return // client gone or node stopping
		}
	}
}

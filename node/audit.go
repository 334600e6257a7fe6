package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// auditSink writes this node's view of the audit log as JSON lines for a log
// shipper: every replicated entry as this node applies it, and every request
// this node refused (refusals change no state, so only the refusing node
// knows of them).
type auditSink struct {
	path string
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	last uint64 // highest replicated entry written
}

// refusal is the line written for a refused request.
type refusal struct {
	Refused bool      `json:"refused"`
	Time    time.Time `json:"time"`
	Node    string    `json:"node"`
	Remote  string    `json:"remote"`
	Method  string    `json:"method"`
	Path    string    `json:"path"`
	Status  int       `json:"status"`
	Code    string    `json:"code"`
	Message string    `json:"message"`
}

func openAuditSink(path string) (*auditSink, error) {
	last, err := lastAuditSeq(path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit file: %w", err)
	}
	return &auditSink{path: path, f: f, w: bufio.NewWriter(f), last: last}, nil
}

// lastAuditSeq finds the last replicated entry already in the file, so a
// restart continues without repeating or skipping entries.
func lastAuditSeq(path string) (uint64, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 1<<20 {
		f.Seek(-1<<20, io.SeekEnd) // the tail holds the newest entries
	}
	var last uint64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e fsm.AuditEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Seq > last {
			last = e.Seq
		}
	}
	return last, nil
}

func (s *auditSink) line(v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(v)
	s.w.Write(append(b, '\n'))
}

func (s *auditSink) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.Flush()
}

// write writes one line now (a refusal, or a summary of refusals).
func (s *auditSink) write(v any) {
	s.line(v)
	s.flush()
}

// follow writes replicated entries as they are applied, until ctx ends.
func (s *auditSink) follow(ctx context.Context, f *fsm.FSM) {
	for {
		applied := f.AppliedIndex() // before reading: a change after the read wakes the wait
		p, err := f.Audit(fsm.AuditFilter{After: s.last, Limit: fsm.MaxAuditLimit})
		if err == nil {
			for _, e := range p.Entries {
				s.line(e)
				s.last = e.Seq
			}
			s.flush()
		}
		if p.More {
			continue
		}
		if f.WaitApplied(ctx, applied+1) != nil {
			return
		}
	}
}

// reopen continues in the file at path, created if need be: after a log
// rotation moved the old one away, new lines go to a new file. On failure
// the old file stays in use.
func (s *auditSink) reopen(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.Flush()
	old := s.f
	s.path, s.f = path, f
	s.w.Reset(f)
	return old.Close()
}

func (s *auditSink) close() error {
	s.flush()
	return s.f.Close()
}

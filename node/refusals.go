package node

import (
	"context"
	"sync"
	"time"

	"github.com/quorumca/quorumca/internal/keyrate"
)

// Refused requests are logged and written to the audit file, but a client
// makes as many of them as it likes (a read that misses costs it nothing),
// so the lines are sampled: per client address and code a burst and then
// one a second, and a ceiling for all clients together. What is left out is
// counted by code and reported in a summary line every refusalSummaryEvery
// and when the node stops. Replicated audit entries are never sampled.

const (
	refusalRate         = 1.0 // lines per second per client address and code
	refusalBurst        = 10
	refusalAllRate      = 100 // lines per second from all clients together
	refusalAllBurst     = 200
	refusalSummaryEvery = 10 * time.Second
	maxLoggedMethod     = 16
)

// refusalSampler decides which refusals are written.
type refusalSampler struct {
	perKey *keyrate.Limiter
	all    *keyrate.Limiter // one key: every client

	mu         sync.Mutex
	suppressed map[string]int // by code; codes are a fixed set
	since      time.Time      // the first refusal left out since the last summary
}

func newRefusalSampler() *refusalSampler {
	return &refusalSampler{perKey: keyrate.New(refusalRate, refusalBurst, 0),
		all: keyrate.New(refusalAllRate, refusalAllBurst, 1), suppressed: map[string]int{}}
}

// allow reports whether a refusal from remote with code is written, and
// counts it if not.
func (s *refusalSampler) allow(remote, code string) bool {
	if s.perKey.Allow(keyrate.Source(remote)+" "+code) && s.all.Allow("") {
		return true
	}
	s.mu.Lock()
	if len(s.suppressed) == 0 {
		s.since = time.Now().UTC()
	}
	s.suppressed[code]++
	s.mu.Unlock()
	return false
}

// take returns and resets what was left out.
func (s *refusalSampler) take() (total int, byCode map[string]int, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.suppressed {
		total += n
	}
	byCode, since = s.suppressed, s.since
	s.suppressed = map[string]int{}
	return total, byCode, since
}

func cutMethod(m string) string {
	if len(m) > maxLoggedMethod {
		return m[:maxLoggedMethod] + "..."
	}
	return m
}

// refusalSummary is the line that stands for refusals left out.
type refusalSummary struct {
	Refused    bool           `json:"refused"`
	Time       time.Time      `json:"time"`
	Node       string         `json:"node"`
	Since      time.Time      `json:"since"`
	Suppressed int            `json:"suppressed"`
	ByCode     map[string]int `json:"by_code"`
}

// summarizeRefusals reports what the sampler left out, periodically until
// ctx ends.
func (n *Node) summarizeRefusals(ctx context.Context) {
	t := time.NewTicker(refusalSummaryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.reportSuppressed()
		}
	}
}

// reportSuppressed writes one summary line, if any refusal was left out.
func (n *Node) reportSuppressed() {
	total, byCode, since := n.refusals.take()
	if total == 0 {
		return
	}
	n.log.Warn("refused requests not logged one by one", "component", "audit", "suppressed", total,
		"since", since, "by_code", byCode)
	if n.audit != nil {
		n.audit.write(refusalSummary{Refused: true, Time: time.Now().UTC(), Node: n.cfg.NodeName, Since: since,
			Suppressed: total, ByCode: byCode})
	}
}

package authority

import (
	"fmt"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
	"github.com/quorumca/quorumca/internal/keyrate"
)

// LineageLimits bound, per certificate lineage (a first issue and its
// chain of renewals, fsm.Cert.LineageID), how often its holder may renew
// and revoke. A renewal signs and commits a certificate and a revocation
// commits and waits for every node: without a bound, one holder could
// spend the signer's quota and the log. The buckets are per node.
type LineageLimits struct {
	RenewalsPerMinute          float64
	RenewalBurst               int
	HolderRevocationsPerMinute float64
	HolderRevocationBurst      int
}

// DefaultLineageLimits: a lineage renews at most about every 10 seconds
// after a burst of 10, far above what a certificate living more than a
// minute needs; raise them for shorter-lived certificates.
var DefaultLineageLimits = LineageLimits{RenewalsPerMinute: 6, RenewalBurst: 10, HolderRevocationsPerMinute: 6, HolderRevocationBurst: 10}

func (l LineageLimits) withDefaults() LineageLimits {
	d := DefaultLineageLimits
	if l.RenewalsPerMinute > 0 {
		d.RenewalsPerMinute = l.RenewalsPerMinute
	}
	if l.RenewalBurst > 0 {
		d.RenewalBurst = l.RenewalBurst
	}
	if l.HolderRevocationsPerMinute > 0 {
		d.HolderRevocationsPerMinute = l.HolderRevocationsPerMinute
	}
	if l.HolderRevocationBurst > 0 {
		d.HolderRevocationBurst = l.HolderRevocationBurst
	}
	return d
}

// ErrRateLimited: a limit per key was reached; the API answers 429 with
// Retry-After. A refusal under a limit says when to ask again (RetryAfter).
var ErrRateLimited = errs.New(errs.RateLimited, "rate_limited", "rate limited")

// limitLineage counts one event of what for rec's lineage.
func limitLineage(l *keyrate.Limiter, rec *fsm.Cert, what string) error {
	key := rec.LineageID()
	if l.Allow(key) {
		return nil
	}
	d := l.Delay(key)
	e := ErrRateLimited.With(fmt.Sprintf("too many %s for the lineage of certificate %s (first issued as %s); retry in %s", what, rec.Serial, key, d.Round(time.Second)))
	e.RetryAfter = d
	return e
}

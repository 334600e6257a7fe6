package authority

import (
	"context"
	"errors"
	"hash/fnv"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// Renewal information (RFC 9773): when a certificate's holder should
// renew, computed from what the cluster knows. ACME clients read it at
// renewalInfo, the agent and JSON clients at /v1/certs/{serial}/renewal-info,
// so every renewal path follows one schedule.

// RenewalWindow is a suggested renewal window; a client picks a time in
// it at random.
type RenewalWindow struct {
	Start, End time.Time
	// Reason says why a window was moved to now ("" for the usual one).
	Reason string
	// RetryAfter: when to ask again.
	RetryAfter time.Duration
}

// Where a certificate's usual window lies in its life, counted from when
// it was signed (its NotBefore is backdated by backdate), and how wide it is: windows of
// certificates issued together are spread by their serials between 7/12
// and 9/12 of the lifetime (where the agent renewed before it asked), so
// a fleet that enrolled at once does not renew at once.
const (
	windowFrom   = 7.0 / 12
	windowWidth  = 1.0 / 100
	windowSpread = 2.0/12 - windowWidth
	// ariRetry is how often a client asks again; an event (a revocation,
	// an issuer rotation) reaches the fleet within it.
	ariRetry = 6 * time.Hour
	// rotationSpread bounds the window of certificates whose issuer is
	// no longer active: replaced early, over an hour, not all at once.
	rotationSpread = time.Hour
)

// RenewalInfo is serial's suggested renewal window.
func (ca *CA) RenewalInfo(ctx context.Context, serial string) (*RenewalWindow, *fsm.Cert, error) {
	serial, err := NormalizeSerial(serial)
	if err != nil {
		return nil, nil, err
	}
	rec, err := lookup(ctx, ca, func() (*fsm.Cert, error) { return ca.state.Cert(serial) })
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, nil, refuse(fsm.ErrCertUnknown, "no certificate with serial %s", serial)
	}
	if err != nil {
		return nil, nil, err
	}
	now := ca.now().UTC().Truncate(time.Second)
	return renewalWindow(rec, ca.issuerState(rec), now), rec, nil
}

// issuerState says whether rec's issuer still issues: "" if so, else why not.
func (ca *CA) issuerState(rec *fsm.Cert) string {
	a, err := ca.state.Authority(rec.Authority)
	if err != nil {
		return ""
	}
	iss := a.Issuer(rec.Issuer)
	switch {
	case iss == nil:
		return ""
	case iss.Revoked():
		return "issuer revoked"
	case !iss.Active:
		return "issuer rotated"
	}
	return ""
}

func renewalWindow(rec *fsm.Cert, issuer string, now time.Time) *RenewalWindow {
	from := rec.NotBefore.Add(backdate)
	if !from.Before(rec.NotAfter) {
		from = rec.NotBefore
	}
	life := rec.NotAfter.Sub(from)
	switch {
	case rec.Revoked():
		// Replace it at once: it is already refused everywhere.
		return &RenewalWindow{Start: now.Add(-time.Hour), End: now.Add(-time.Minute), Reason: "revoked", RetryAfter: ariRetry}
	case issuer != "" && now.Before(rec.NotAfter):
		spread := min(rotationSpread, rec.NotAfter.Sub(now)/2)
		return &RenewalWindow{Start: now, End: now.Add(max(spread, time.Minute)), Reason: issuer, RetryAfter: ariRetry}
	}
	h := fnv.New64a()
	h.Write([]byte(rec.Serial))
	frac := windowFrom + windowSpread*float64(h.Sum64()%10000)/10000
	start := from.Add(time.Duration(float64(life) * frac))
	end := start.Add(max(time.Duration(float64(life)*windowWidth), time.Millisecond))
	retry := min(ariRetry, max(life/20, time.Minute))
	return &RenewalWindow{Start: start, End: end, RetryAfter: retry}
}

package authority

import (
	"fmt"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

func TestRenewalWindows(t *testing.T) {
	nb := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	now := nb.Add(10 * 24 * time.Hour)
	rec := func(serial string) *fsm.Cert {
		return &fsm.Cert{Serial: serial, NotBefore: nb.Add(-backdate), NotAfter: nb.Add(90 * 24 * time.Hour)}
	}
	life := 90 * 24 * time.Hour
	// A fleet issued at once is spread over 7/12-9/12 of the lifetime.
	starts := map[time.Time]bool{}
	for i := range 200 {
		w := renewalWindow(rec(fmt.Sprintf("%x", 1000+i)), "", now)
		if w.Start.Before(nb.Add(life*7/12)) || w.End.After(nb.Add(life*9/12)) || !w.End.After(w.Start) || w.Reason != "" {
			t.Fatalf("window %+v", w)
		}
		starts[w.Start.Truncate(time.Hour)] = true
	}
	if len(starts) < 100 {
		t.Fatalf("200 certificates share %d start hours: not spread", len(starts))
	}
	// The same certificate always gets the same window.
	if a, b := renewalWindow(rec("ab"), "", now), renewalWindow(rec("ab"), "", now.Add(time.Hour)); !a.Start.Equal(b.Start) {
		t.Fatal("the window moves between asks")
	}
	// Counted from the signature: a backdated NotBefore does not pull the
	// window before the certificate was obtained.
	short := &fsm.Cert{Serial: "12", NotBefore: nb.Add(-backdate), NotAfter: nb.Add(40 * time.Second)}
	if w := renewalWindow(short, "", nb); w.Start.Before(nb.Add(40*time.Second*7/12)) || w.End.After(nb.Add(31*time.Second)) {
		t.Fatalf("a 40s certificate's window %s-%s, issued at %s", w.Start, w.End, nb)
	}
	revoked := rec("cd")
	revoked.RevokedAt = now
	if w := renewalWindow(revoked, "", now); !w.End.Before(now) || w.Reason != "revoked" {
		t.Fatalf("revoked: %+v", w)
	}
	if w := renewalWindow(rec("ef"), "issuer rotated", now); !w.Start.Equal(now) || w.End.After(now.Add(time.Hour)) || w.Reason == "" {
		t.Fatalf("rotated issuer: %+v", w)
	}
}

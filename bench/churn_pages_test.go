//go:build !race

// Without the race detector (make test runs it on its own): forty
// thousand devices for a week under -race take minutes and measure the
// detector.

package bench

import (
	"context"
	"testing"
)

// Once retention is reached, bolt reuses the pages retention frees: the
// free pages and the file stop growing. With bbolt's map freelist they did
// not (free pages 23 -> 44 MiB and the file 217 -> 233 MiB from day 4 to
// day 7 at this size): it handed single pages out of any free run and
// broke up the contiguous runs its own freelist needs at every commit.
// Smaller fleets do not show it; this one takes about a minute.
func TestChurnReusesFreePages(t *testing.T) {
	res, err := Churn(context.Background(), ChurnConfig{Dir: t.TempDir(), Devices: 40000, Days: 7, Batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Points) != 7 {
		t.Fatalf("points: %+v", res.Points)
	}
	day4, day7 := res.Points[3], res.Points[6]
	if day7.FreeMiB > day4.FreeMiB*1.25 {
		t.Errorf("free pages grew from %.1f MiB on day 4 to %.1f MiB on day 7", day4.FreeMiB, day7.FreeMiB)
	}
	if day7.BoltMiB > day4.BoltMiB {
		t.Errorf("the file grew from %.1f MiB on day 4 to %.1f MiB on day 7", day4.BoltMiB, day7.BoltMiB)
	}
}

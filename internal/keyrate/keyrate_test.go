package keyrate

import (
	"fmt"
	"testing"
	"time"
)

func TestEachKeyHasItsOwnBucket(t *testing.T) {
	l := New(1, 3, 0)
	now := time.Unix(1000, 0)
	for i := range 3 {
		if !l.AllowAt("a", now) {
			t.Fatalf("event %d of a burst of 3 refused", i+1)
		}
	}
	if l.AllowAt("a", now) {
		t.Fatal("a 4th event in the same instant was allowed")
	}
	if !l.AllowAt("b", now) {
		t.Fatal("another key was refused because of a's events")
	}
	if !l.AllowAt("a", now.Add(time.Second)) {
		t.Fatal("a was still refused a second later at 1/s")
	}
}

func TestMemoryIsBoundedAndRecentKeysKept(t *testing.T) {
	l := New(1, 1, 100)
	now := time.Unix(1000, 0)
	l.AllowAt("hot", now) // its bucket is empty now
	for i := range 1000 {
		l.AllowAt(fmt.Sprintf("k%d", i), now)
		if i%50 == 0 {
			l.AllowAt("hot", now) // seen again: stays remembered
		}
	}
	if n := l.Len(); n != 100 {
		t.Fatalf("remembers %d keys, want at most 100", n)
	}
	if l.AllowAt("hot", now) {
		t.Fatal("a key seen recently was forgotten (its empty bucket refilled)")
	}
}

func TestDelayDoesNotCount(t *testing.T) {
	l := New(1, 1, 0)
	if d := l.Delay("a"); d != 0 {
		t.Fatalf("delay before any event %v, want 0", d)
	}
	if !l.Allow("a") {
		t.Fatal("first event refused: Delay counted one")
	}
	if d := l.Delay("a"); d <= 0 || d > time.Second {
		t.Fatalf("delay after a burst of 1 at 1/s = %v, want (0, 1s]", d)
	}
}

// One IPv6 host commonly holds a whole /64: it counts as one source.
func TestSource(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":                 "192.0.2.7",
		"192.0.2.1:443":             "192.0.2.1",
		"::ffff:192.0.2.7":          "192.0.2.7",
		"[::ffff:192.0.2.1]:80":     "192.0.2.1",
		"2001:db8:1:2:aaaa::1":      "2001:db8:1:2::/64",
		"2001:db8:1:2:bbbb::9":      "2001:db8:1:2::/64",
		"[2001:db8:1:2:3:4:5:6]:80": "2001:db8:1:2::/64",
		"2001:db8:1:3:aaaa::1":      "2001:db8:1:3::/64",
		"fe80::1%eth0":              "fe80::/64",
		"not-an-address":            "not-an-address",
	} {
		if got := Source(in); got != want {
			t.Errorf("Source(%q) = %q, want %q", in, got, want)
		}
	}
}

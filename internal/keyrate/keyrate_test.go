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

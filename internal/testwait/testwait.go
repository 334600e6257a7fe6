// Package testwait lets a test wait for a condition that has no event to
// wait on, with a deadline instead of a bare sleep.
package testwait

import (
	"testing"
	"time"
)

// For polls cond until it holds, or fails the test once timeout has
// passed, saying what it waited for.
func For(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package testwait

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder stands in for a test to see how For fails it.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

// Fatalf ends the goroutine like the real one, so For returns no further.
func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(r)
}

func run(timeout time.Duration, cond func() bool) (failed string) {
	r := &recorder{}
	defer func() {
		if p := recover(); p != nil && p != any(r) {
			panic(p)
		}
		failed = r.msg
	}()
	For(r, timeout, "the answer", cond)
	return ""
}

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	if msg := run(5*time.Second, func() bool { n++; return n == 3 }); msg != "" || n != 3 {
		t.Fatalf("failed with %q after %d polls", msg, n)
	}
}

func TestForFailsNamingWhatItWaitedFor(t *testing.T) {
	start := time.Now()
	msg := run(50*time.Millisecond, func() bool { return false })
	if !strings.Contains(msg, "the answer") || !strings.Contains(msg, "50ms") {
		t.Fatalf("failure message %q does not name the wait and its timeout", msg)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("a 50ms wait failed only after %s", time.Since(start))
	}
}

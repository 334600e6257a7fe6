package errs

import (
	"errors"
	"fmt"
	"testing"
)

var (
	errA = New(Unavailable, "a_down", "a is down")
	errB = New(RateLimited, "b_busy", "b is busy")
)

func TestIsMatchesByCode(t *testing.T) {
	derived := errA.With("a is down: disk full")
	if !errors.Is(derived, errA) || !errors.Is(fmt.Errorf("ctx: %w", derived), errA) {
		t.Fatal("a refusal made from a sentinel is not that sentinel")
	}
	decoded := &Error{Code: "a_down", Message: "from the wire"}
	if !errors.Is(decoded, errA) {
		t.Fatal("an error decoded with the sentinel's code is not the sentinel")
	}
	if errors.Is(derived, errB) {
		t.Fatal("another code matched")
	}
	if derived.Kind != Unavailable || errA.Message != "a is down" {
		t.Fatalf("With changed the kind or the sentinel: %+v %+v", derived, errA)
	}
}

func TestOfIsTheInnermost(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want *Error
	}{
		{"nil", nil, nil},
		{"plain", errors.New("x"), nil},
		{"bare", errA, errA},
		{"wrapped", fmt.Errorf("ctx: %w", errA), errA},
		{"two wrapped", fmt.Errorf("%w: %w", errA, fmt.Errorf("inner: %w", errB)), errB},
		{"second plain", fmt.Errorf("%w: %w", errA, errors.New("x")), errA},
		{"joined", errors.Join(errB, errors.New("x")), errB},
	}
	for _, tt := range tests {
		if got := Of(tt.err); got != tt.want {
			t.Errorf("%s: Of = %v, want %v", tt.name, got, tt.want)
		}
	}
}

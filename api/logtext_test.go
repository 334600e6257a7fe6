package api

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLogTextEscapesAndBounds(t *testing.T) {
	tests := []struct{ in, want string }{
		{"no authority named \"a\"", "no authority named \"a\""},
		{"line\nforged", `line\x0aforged`},
		{"\x1b[31mred", `\x1b[31mred`},
		{"rtl \u202eevil", `rtl \u202eevil`},
		{"bad \xff utf-8", `bad \xff utf-8`},
		{"ünïcode ok", "ünïcode ok"},
	}
	for _, tt := range tests {
		if got := LogText(tt.in); got != tt.want {
			t.Errorf("LogText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, in := range []string{strings.Repeat("é", 1000), strings.Repeat("\n", 1000)} {
		got := LogText(in)
		if len(got) > maxLogText+3 || !strings.HasSuffix(got, "...") {
			t.Errorf("LogText of %d bytes: %d bytes %.20q...", len(in), len(got), got)
		}
	}
}

func TestLogPathIsEscapedAndBounded(t *testing.T) {
	r := httptest.NewRequest("GET", "/v1/certs/a%0Ab%1B%E2%80%AE"+strings.Repeat("x", 1000), nil)
	got := LogPath(r)
	if !strings.HasPrefix(got, "/v1/certs/a%0Ab%1B%E2%80%AExxx") || len(got) != maxLogPath+3 {
		t.Fatalf("LogPath = %.60q... (%d bytes)", got, len(got))
	}
}

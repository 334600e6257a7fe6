package api

import (
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// What a client sends reaches logs and the audit file only in a bounded,
// printable form: a path of 60 KB with newlines and terminal escapes in it
// must neither fill a disk nor forge a log line or repaint a terminal.

const (
	maxLogPath = 256
	maxLogText = 512
)

// LogPath is r's path for logs: percent-encoded as on the wire, so it holds
// no control characters, and cut to maxLogPath bytes.
func LogPath(r *http.Request) string { return cut(r.URL.EscapedPath(), maxLogPath) }

// LogText is s for logs: control characters, invisible formatting ones
// (bidirectional overrides) and invalid UTF-8 escaped, cut to maxLogText
// bytes.
func LogText(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			clean = false
			break
		}
	}
	if clean {
		return cut(s, maxLogText)
	}
	var b strings.Builder
	i := 0
	for i < len(s) && b.Len() <= maxLogText {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x80 && unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		i += n
	}
	out := b.String()
	if i < len(s) && len(out) <= maxLogText {
		out += "..." // cut below would not mark it
	}
	return cut(out, maxLogText)
}

// cut shortens s to at most n bytes plus a marker, on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

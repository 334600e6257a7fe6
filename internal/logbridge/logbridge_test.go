package logbridge

import (
	"encoding/json"
	"github.com/quorumca/quorumca/internal/testwait"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// net/http's complaint about a failed TLS handshake comes out as one JSON
// object whose message is the complaint; a "[LEVEL] " tag sets the level.
func TestStandardLogLinesAreJSON(t *testing.T) {
	var buf testwait.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = Logger(l.With("component", "http"), slog.LevelDebug)
	srv.StartTLS()
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) // plain HTTP to a TLS port
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	conn.Read(make([]byte, 512))
	conn.Close()
	Logger(l, slog.LevelDebug).Print("[ERR] memberlist: failed to probe\n")

	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(buf.String(), "\n") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON object (%v): %s", err, line)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	// The server logs on its own goroutine: find the lines by message.
	for _, l := range lines {
		msg, _ := l["msg"].(string)
		switch {
		case strings.HasPrefix(msg, "http: TLS handshake error"):
			if l["level"] != "DEBUG" || l["component"] != "http" {
				t.Errorf("handshake line: %v", l)
			}
		case msg == "memberlist: failed to probe":
			if l["level"] != "ERROR" {
				t.Errorf("tagged line: %v", l)
			}
		default:
			t.Errorf("unexpected line: %v", l)
		}
	}
}

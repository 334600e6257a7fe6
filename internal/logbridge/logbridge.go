// Package logbridge sends lines written through the standard log package
// (net/http's ErrorLog, memberlist, hclog's standard loggers) to slog, so a
// JSON log stays one JSON object per line.
package logbridge

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
)

// Logger is a *log.Logger whose every line becomes an slog record at level,
// or at the level its "[LEVEL] " tag names.
func Logger(l *slog.Logger, level slog.Level) *log.Logger {
	return log.New(Writer(l, level), "", 0)
}

// Writer is Logger's io.Writer: each Write is one line.
func Writer(l *slog.Logger, level slog.Level) io.Writer { return writer{l, level} }

type writer struct {
	l     *slog.Logger
	level slog.Level
}

// Tags that memberlist and hclog put before a line.
var tags = map[string]slog.Level{
	"TRACE": slog.LevelDebug - 4, "DEBUG": slog.LevelDebug, "INFO": slog.LevelInfo,
	"WARN": slog.LevelWarn, "ERR": slog.LevelError, "ERROR": slog.LevelError,
}

func (w writer) Write(p []byte) (int, error) {
	msg, level := strings.TrimSpace(string(p)), w.level
	if rest, ok := strings.CutPrefix(msg, "["); ok {
		if tag, after, ok := strings.Cut(rest, "] "); ok {
			if lv, known := tags[tag]; known {
				msg, level = after, lv
			}
		}
	}
	w.l.Log(context.Background(), level, msg)
	return len(p), nil
}

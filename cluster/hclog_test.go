package cluster

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/quorumca/quorumca/internal/testwait"
)

// jsonLines parses every line of a JSON log, failing on any that is not a
// JSON object.
func jsonLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not a JSON object (%v): %s", err, line)
		}
		out = append(out, m)
	}
	return out
}

// What raft passes its logger becomes readable attributes: hclog.Fmt is
// formatted, an odd argument and a key that is no string are kept, structs
// are printed as fmt prints them.
func TestRaftLogArgumentsBecomeAttributes(t *testing.T) {
	var buf testwait.Buffer
	h := newHCLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4})), "raft")
	servers := []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: "127.0.0.1:1"}}
	h.Info("updating configuration", "servers", hclog.Fmt("%+v", servers))
	h.Warn("odd", "key", "value", "dangling")
	h.Debug("no string key", 7, "seven")
	h.Error("struct", "peer", servers[0], "error", errors.New("boom"))
	h.With("term", 3).Named("snapshot").Trace("nested")
	h.StandardLogger(nil).Print("[WARN] from a standard logger")

	lines := jsonLines(t, buf.String())
	want := []struct {
		msg, key string
		value    any
	}{
		{"updating configuration", "servers", "[{Suffrage:Voter ID:n1 Address:127.0.0.1:1}]"},
		{"odd", "extra", "dangling"},
		{"no string key", "7", "seven"},
		{"struct", "peer", "{Suffrage:Voter ID:n1 Address:127.0.0.1:1}"},
		{"nested", "subsystem", "raft.snapshot"},
		{"from a standard logger", "level", "WARN"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if lines[i]["msg"] != w.msg || lines[i][w.key] != w.value {
			t.Errorf("line %d: %v, want msg %q and %s=%v", i, lines[i], w.msg, w.key, w.value)
		}
	}
	if lines[3]["error"] != "boom" || lines[4]["term"] != float64(3) {
		t.Errorf("error or implied argument lost: %v %v", lines[3], lines[4])
	}
}

// A real cluster's log in JSON (elections, a configuration change, joins)
// is one JSON object per line, and its configuration lines name servers
// readably.
func TestClusterLogIsJSON(t *testing.T) {
	var buf testwait.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	jsonLog := func(cfg *Config) { cfg.Logger = logger.With("node", cfg.NodeID) }
	u := newUpgradeCluster(t)
	leader, _, api := u.memberWith("n1", true, nil, nil, jsonLog)
	testwait.For(t, 20*time.Second, "n1 to lead", leader.IsLeader)
	u.memberWith("n2", false, []string{"https://" + api.addr}, nil, jsonLog)
	testwait.For(t, 20*time.Second, "two voters", func() bool {
		servers, _ := leader.Servers()
		return len(servers) == 2
	})
	var config bool
	for _, l := range jsonLines(t, buf.String()) {
		if l["msg"] != "updating configuration" {
			continue
		}
		config = true
		if s, ok := l["servers"].(string); !ok || !strings.Contains(s, "ID:n2") {
			t.Errorf("configuration line names its servers as %#v", l["servers"])
		}
	}
	if !config {
		t.Fatal("no configuration change was logged")
	}
}

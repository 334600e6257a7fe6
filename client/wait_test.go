package client

import (
	"strings"
	"testing"
)

// QuorumWithout counts the voters other than the one to leave out that the
// leader judges healthy against a quorum of all voters: non-voters count
// for nothing, and the one left out counts as gone whatever its health.
func TestQuorumWithout(t *testing.T) {
	srv := func(id, state string, healthy bool) AutopilotServer {
		return AutopilotServer{ID: id, RaftState: state, Healthy: healthy}
	}
	for _, tc := range []struct {
		name    string
		servers []AutopilotServer
		without string
		want    string // "" for nil, else part of the error
	}{
		{"all healthy", []AutopilotServer{srv("a", "leader", true), srv("b", "voter", true), srv("c", "voter", true)}, "b", ""},
		{"the leader itself", []AutopilotServer{srv("a", "leader", true), srv("b", "voter", true), srv("c", "voter", true)}, "a", ""},
		{"another voter down", []AutopilotServer{srv("a", "leader", true), srv("b", "voter", true), srv("c", "voter", false)}, "b", "1 of 3 voters are healthy, below a quorum of 2 (not healthy: c)"},
		{"the one left out is the sick one", []AutopilotServer{srv("a", "leader", true), srv("b", "voter", true), srv("c", "voter", false)}, "c", ""},
		{"a healthy non-voter does not vote", []AutopilotServer{srv("a", "leader", true), srv("b", "voter", true), srv("c", "voter", false), srv("d", "non-voter", true)}, "b", "below a quorum of 2"},
		{"five, two away", []AutopilotServer{srv("a", "leader", true), srv("b", "voter", true), srv("c", "voter", true), srv("d", "voter", false), srv("e", "voter", true)}, "e", ""},
		{"five, three away", []AutopilotServer{srv("a", "leader", true), srv("b", "voter", true), srv("c", "voter", false), srv("d", "voter", false), srv("e", "voter", true)}, "e", "2 of 5 voters are healthy, below a quorum of 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Health{Autopilot: &Autopilot{Servers: tc.servers}}
			err := h.QuorumWithout(tc.without)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	if err := (&Health{}).QuorumWithout("a"); err == nil {
		t.Fatal("no autopilot view passed")
	}
}

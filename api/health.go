package api

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// health answers while the process runs, with this node's view of the cluster.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Cluster.Status())
}

// Bounds of readiness: a follower that has not heard from the leader for
// longer, or has more committed entries left to apply, is not ready.
const (
	readyContact = 10 * time.Second
	readyLag     = 1000
)

// ready says whether this node should receive traffic: it knows a leader,
// hears from it, the leader confirms over the internal RPC that this node
// has applied every write acknowledged before the check (a read index), and
// its signer works. Load balancers check it. A node that cannot reach the
// leader's internal RPC (cut off from it, or an upgraded node whose leader
// runs a release it does not trust as a node) is not ready.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	st := s.Cluster.Status()
	switch {
	case st.LeaderID == "":
		writeError(w, http.StatusServiceUnavailable, "no_leader", "this node knows no leader")
		return
	case st.LastContact > readyContact.Seconds():
		writeError(w, http.StatusServiceUnavailable, "leader_unreachable",
			fmt.Sprintf("no contact with the leader for %.0fs", st.LastContact))
		return
	case st.CommitIndex > st.AppliedIndex+readyLag:
		writeError(w, http.StatusServiceUnavailable, "catching_up",
			fmt.Sprintf("%d committed entries not applied yet", st.CommitIndex-st.AppliedIndex))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.CA.CaughtUp(ctx); err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "catching_up", "the leader has not confirmed this node is caught up: "+err.Error())
		return
	}
	if err := s.CA.Health(ctx); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.APICertProblem != nil {
		if why := s.APICertProblem(); why != "" {
			writeError(w, http.StatusServiceUnavailable, "no_api_certificate", why)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true, "node": st.NodeID})
}

package api

import (
	"context"
	"net/http"
	"time"
)

// health answers while the process runs, with this node's view of the cluster.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Cluster.Status())
}

// ready says whether this node should receive traffic: it knows a leader and
// its signer works. Load balancers check it.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	st := s.Cluster.Status()
	if st.LeaderID == "" {
		writeError(w, http.StatusServiceUnavailable, "no_leader", "this node knows no leader")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.CA.Health(ctx); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true, "node": st.NodeID})
}

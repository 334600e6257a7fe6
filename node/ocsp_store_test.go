package node

import (
	"bytes"
	"fmt"
	"testing"

	"golang.org/x/crypto/ocsp"
)

// Signed OCSP answers survive a restart of the node: it serves the very
// answers it signed before, still valid, without signing again.
func TestOCSPAnswersSurviveRestart(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	var holders []*holder
	for i := range 3 {
		holders = append(holders, c.enrollHolder(n, fmt.Sprintf("restart-%d.example", i)))
	}
	signs := signatures(t, c, n)
	var before [][]byte
	for _, h := range holders {
		st := c.ocspStatus(n, h)
		if st.Status != ocsp.Good {
			t.Fatalf("before the restart: status %d", st.Status)
		}
		before = append(before, st.Raw)
	}
	if got := signatures(t, c, n) - signs; got != float64(len(holders)) {
		t.Fatalf("%d certificates asked about: %v signatures", len(holders), got)
	}

	c.Stop(n)
	c.Restart(n)
	c.WaitConverged()
	signs = signatures(t, c, n)
	for i, h := range holders {
		st := c.ocspStatus(n, h)
		if st.Status != ocsp.Good || !bytes.Equal(st.Raw, before[i]) {
			t.Fatalf("certificate %d after the restart: status %d, the same answer %v", i, st.Status, bytes.Equal(st.Raw, before[i]))
		}
	}
	if got := signatures(t, c, n) - signs; got != 0 {
		t.Fatalf("after a restart, %d certificates asked about again: %v signatures, want 0", len(holders), got)
	}
}

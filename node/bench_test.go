package node

import (
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkEnroll measures an enrollment over HTTPS (mint a token, sign a
// CSR) against clusters of 1 and 3 nodes, requests spread over all nodes.
// Compare the two in one run: the ratio is the cost of replication.
func BenchmarkEnroll(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run("nodes="+strconv.Itoa(n), func(b *testing.B) {
			t := &testing.T{}
			c := newTestCluster(t, n)
			csr := newCSR(t, newKey(t), "bench.example")
			var next atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					tn := c.nodes[int(next.Add(1))%n]
					c.sign(tn, c.mintToken(tn, "1h", "bench.example"), csr)
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "enrollments/s")
			c.Close()
		})
	}
}

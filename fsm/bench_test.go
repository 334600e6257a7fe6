package fsm

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkApplyIssueBatch measures applying issuance entries in batches of
// 64 (a burst that raft hands over at once): one bolt transaction and one
// fsync per batch.
func BenchmarkApplyIssueBatch(b *testing.B) {
	f, err := Open(b.TempDir() + "/fsm.db")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	lb := &logBuilder{t: &testing.T{}}
	f.ApplyBatch([]*raft.Log{lb.entry(CmdAuthorityPut, t0, authority())})
	const batch = 64
	der := make([]byte, 600) // about the size of a P-256 leaf
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		b.StopTimer()
		n := min(batch, b.N-i)
		toks := make([]Token, n)
		for j := range toks {
			toks[j] = token(fmt.Sprint(i+j), fmt.Sprint("t", i+j), "a.example")
		}
		f.ApplyBatch([]*raft.Log{lb.entry(CmdTokenCreate, t0, TokenCreate{Tokens: toks})})
		logs := make([]*raft.Log, n)
		for j := range logs {
			c := cert(fmt.Sprintf("%x", i+j+1), "a.example")
			c.DER = der
			logs[j] = lb.entry(CmdIssue, t0.Add(time.Minute), Issue{TokenHash: hashOf(fmt.Sprint(i + j)), Cert: c})
			withOrigin(b, logs[j], "provisioner:default token:"+fmt.Sprint("t", i+j)) // as the API's are
		}
		b.StartTimer()
		f.ApplyBatch(logs)
	}
}

// withOrigin sets the origin of a log entry's envelope.
func withOrigin(b *testing.B, l *raft.Log, actor string) {
	env, err := DecodeEnvelope(l.Data)
	if err != nil {
		b.Fatal(err)
	}
	env.Origin = &Origin{Actor: actor, Remote: "192.0.2.1"}
	if l.Data, err = env.Encode(); err != nil {
		b.Fatal(err)
	}
}

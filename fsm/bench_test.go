package fsm

import (
	"encoding/json"
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

// BenchmarkAuditFilteredFollow is a follower of a command that the last
// 10,000 entries do not match, reading after one more change: before the
// audit index it decoded all 10,000 entries at every change.
func BenchmarkAuditFilteredFollow(b *testing.B) {
	f, err := Open(b.TempDir() + "/fsm.db")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	lb := &logBuilder{t: &testing.T{}}
	for i := 0; i < 10000; i += 1000 {
		logs := make([]*raft.Log, 1000)
		for j := range logs {
			logs[j] = lb.entry(CmdNodeUpsert, t0, Node{ID: "n1", APIAddr: "a", RaftAddr: "r"})
		}
		f.ApplyBatch(logs)
	}
	p, _ := f.Audit(AuditFilter{Command: "revoke"})
	reads := f.AuditReads()
	b.ResetTimer()
	for b.Loop() {
		p, _ = f.Audit(AuditFilter{After: p.Next - 1, Command: "revoke"}) // as if one entry were new
	}
	b.ReportMetric(float64(f.AuditReads()-reads)/float64(b.N), "reads/op")
}

// BenchmarkIssuePayload encodes and decodes one issuance command as the
// leader and every node do: the binary frame (issue v3, log format 2) and
// the JSON one (issue v2). Reported: bytes per entry.
func BenchmarkIssuePayload(b *testing.B) {
	c := cert("5a0e3c9b7d1f2e4a6b8c0d1e2f3a4b5c", "device-1234.fleet.example")
	c.DER = make([]byte, 600) // about the size of a P-256 leaf
	c.Provisioner, c.TokenID, c.Requester = "fleet", "9c1d2e3f", "provisioner:fleet"
	c.Properties = map[string]string{"site": "eu-1", "batch": "2026-12"}
	in := Issue{OneTime: &OneTime{Key: hashOf("jti"), Expires: t0}, Cert: c}
	b.Run("binary", func(b *testing.B) {
		var n int
		for b.Loop() {
			p := in.appendPayload(nil)
			var out Issue
			if err := readFrame(p, &out); err != nil {
				b.Fatal(err)
			}
			n = len(p)
		}
		b.ReportMetric(float64(n), "bytes/entry")
	})
	b.Run("json", func(b *testing.B) {
		var n int
		for b.Loop() {
			p, err := json.Marshal(in)
			if err != nil {
				b.Fatal(err)
			}
			var out Issue
			if err := json.Unmarshal(p, &out); err != nil {
				b.Fatal(err)
			}
			n = len(p)
		}
		b.ReportMetric(float64(n), "bytes/entry")
	})
}

// BenchmarkServerProvisioners is what every issuance pays to learn the
// reserved names: ten provisioners, one of kind server.
func BenchmarkServerProvisioners(b *testing.B) {
	f, err := Open(b.TempDir() + "/fsm.db")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	lb := &logBuilder{t: &testing.T{}}
	logs := []*raft.Log{lb.entry(CmdAuthorityPut, t0, authority())}
	for i := range 10 {
		p := Provisioner{Name: fmt.Sprint("p", i), Kind: KindEnrollmentToken, Authority: "default", Policy: Policy{DNS: []string{"*"}}}
		if i == 0 {
			p.Kind, p.Policy = KindServer, Policy{DNS: []string{"ca.example"}, EKU: "server"}
		}
		logs = append(logs, lb.entry(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: p}))
	}
	for i, r := range f.ApplyBatch(logs) {
		if r != nil {
			b.Fatalf("entry %d: %v", i, r)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if ps, err := f.ServerProvisioners(); err != nil || len(ps) != 1 {
			b.Fatal(len(ps), err)
		}
	}
}

package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func openTest(t *testing.T) *FSM {
	t.Helper()
	f, err := Open(filepath.Join(t.TempDir(), "fsm.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// logBuilder makes synthetic log entries with increasing indexes.
type logBuilder struct {
	t     *testing.T
	index uint64
}

func (b *logBuilder) entry(typ CmdType, at time.Time, payload any) *raft.Log {
	b.t.Helper()
	env, err := NewEnvelope(typ, fmt.Sprintf("req-%d", b.index+1), payload)
	if err != nil {
		b.t.Fatal(err)
	}
	env.Time = at.UnixNano()
	data, err := env.Encode()
	if err != nil {
		b.t.Fatal(err)
	}
	b.index++
	return &raft.Log{Index: b.index, Term: 1, Type: raft.LogCommand, Data: data}
}

func hashOf(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func authority() Authority {
	return Authority{Name: "default", Root: []byte("root-der"),
		Issuers: []Issuer{{ID: "1", Chain: [][]byte{[]byte("int-der")}, KeyURI: "softkey:/k.pem", Active: true}}}
}

func token(secret, id string, sans ...string) Token {
	return Token{ID: id, Hash: hashOf(secret), SANs: sans, ExpiresAt: t0.Add(time.Hour)}
}

func provCert(serial string, sans ...string) Cert {
	c := cert(serial, sans...)
	c.Provisioner = "p"
	return c
}

func cert(serial string, sans ...string) Cert {
	return Cert{Serial: serial, Authority: "default", Issuer: "1", Subject: "CN=" + sans[0], SANs: sans,
		NotBefore: t0, NotAfter: t0.Add(24 * time.Hour), Requester: "token", DER: []byte("der-" + serial)}
}

// workload is a log that exercises every command, including rejections.
func workload(t *testing.T) []*raft.Log {
	b := &logBuilder{t: t}
	var logs []*raft.Log
	add := func(typ CmdType, at time.Time, p any) { logs = append(logs, b.entry(typ, at, p)) }
	add(CmdAuthorityPut, t0, authority())
	add(CmdNodeUpsert, t0, Node{ID: "n1", APIAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"})
	add(CmdAdminCreate, t0, AdminCreate{Admin: Admin{ID: "a1", Name: "bootstrap", Role: "admin", Hash: hashOf("admin")}})
	var toks []Token
	for i := range 20 {
		toks = append(toks, token(fmt.Sprintf("s%d", i), fmt.Sprintf("t%d", i), fmt.Sprintf("d%d.example", i)))
	}
	add(CmdTokenCreate, t0, TokenCreate{Tokens: toks})
	for i := range 20 {
		if i == 10 { // records from here on in the binary layout
			add(CmdLogFormat, t0.Add(time.Minute), LogFormatMark{Format: LogFormat})
		}
		add(CmdIssue, t0.Add(time.Minute), Issue{TokenHash: hashOf(fmt.Sprintf("s%d", i)), Cert: cert(fmt.Sprintf("%x", 1000+i), fmt.Sprintf("d%d.example", i))})
	}
	add(CmdIssue, t0.Add(time.Minute), Issue{TokenHash: hashOf("s0"), Cert: cert("ffff", "d0.example")}) // replay
	add(CmdProvisionerPut, t0, ProvisionerPut{Provisioner: Provisioner{Name: "p", Kind: KindJWK, Authority: "default",
		Policy: Policy{DNS: []string{"*"}, RenewGrace: time.Hour}}})
	add(CmdIssue, t0.Add(time.Minute), Issue{OneTime: &OneTime{Key: hashOf("jti-1"), Expires: t0.Add(5 * time.Minute)}, Cert: provCert("eeee", "j.example")})
	add(CmdIssue, t0.Add(2*time.Minute), Issue{Renews: "eeee", Cert: provCert("eeef", "j.example")})
	add(CmdRevoke, t0.Add(3*time.Minute), Revoke{Serial: fmt.Sprintf("%x", 1003), Reason: 1, By: "admin"})
	add(CmdCRLPut, t0.Add(3*time.Minute), CRL{Authority: "default", Issuer: "1", Number: 1, ThisUpdate: t0, NextUpdate: t0.Add(time.Hour), DER: []byte("crl")})
	add(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{token("late", "late", "x.example")}})
	add(CmdTokenRevoke, t0, TokenRevoke{ID: "late"})
	add(CmdTokenPrune, t0.Add(2*time.Hour), TokenPrune{Before: t0.Add(2 * time.Hour)})
	resp := OCSPResponder{Authority: "default", KeyURI: "softkey:/ocsp.pem", TTL: 24 * time.Hour,
		Certs: []OCSPResponderCert{{Issuer: "1", DER: []byte("ocsp-1"), NotAfter: t0.Add(24 * time.Hour)}}}
	add(CmdOCSPResponderPut, t0, OCSPResponderPut{Responder: resp})
	resp.Certs[0].DER = []byte("ocsp-2")
	add(CmdOCSPResponderPut, t0.Add(time.Hour), OCSPResponderPut{Responder: resp}) // stale version: refused
	add(CmdOCSPResponderPut, t0.Add(time.Hour), OCSPResponderPut{Responder: resp, ExpectedVersion: 1})
	acmeLog(b, add)
	add(CmdACMEPrune, t0.Add(3*time.Hour), ACMEPrune{Before: t0.Add(3 * time.Hour)})
	deviceLog(add)
	return logs
}

func TestIssueConsumesTokenOnce(t *testing.T) {
	f := openTest(t)
	b := &logBuilder{t: t}
	res := f.ApplyBatch([]*raft.Log{
		b.entry(CmdAuthorityPut, t0, authority()),
		b.entry(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{token("secret", "tok1", "a.example", "b.example")}}),
		b.entry(CmdIssue, t0.Add(time.Minute), Issue{TokenHash: hashOf("secret"), Cert: cert("01", "a.example")}),
		b.entry(CmdIssue, t0.Add(time.Minute), Issue{TokenHash: hashOf("secret"), Cert: cert("02", "b.example")}),
		b.entry(CmdIssue, t0.Add(time.Minute), Issue{TokenHash: hashOf("secret"), Cert: cert("01", "a.example")}),
	})
	for i, want := range []error{nil, nil, nil, ErrTokenUsed, nil} {
		got, _ := res[i].(error)
		if !errors.Is(got, want) || (want == nil && got != nil) {
			t.Errorf("entry %d: got %v, want %v", i, got, want)
		}
	}
	c, err := f.Cert("01")
	if err != nil {
		t.Fatal(err)
	}
	if c.TokenID != "tok1" || !c.IssuedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("record = %+v", c)
	}
	if _, err := f.Cert("02"); !errors.Is(err, ErrNotFound) {
		t.Errorf("rejected issue left a record: %v", err)
	}
	tok, _ := f.TokenByID("tok1")
	if tok.UsedBy != "01" {
		t.Errorf("token used by %q", tok.UsedBy)
	}
	if f.AppliedIndex() != 5 {
		t.Errorf("applied = %d", f.AppliedIndex())
	}
}

func TestIssueRejections(t *testing.T) {
	tests := []struct {
		name string
		iss  Issue
		at   time.Time
		want error
	}{
		{"unknown token", Issue{TokenHash: hashOf("nope"), Cert: cert("01", "a.example")}, t0, ErrTokenInvalid},
		{"expired token", Issue{TokenHash: hashOf("secret"), Cert: cert("01", "a.example")}, t0.Add(time.Hour), ErrTokenExpired},
		{"name not allowed", Issue{TokenHash: hashOf("secret"), Cert: cert("01", "a.example", "evil.example")}, t0, ErrNameNotAllowed},
		{"duplicate serial", Issue{TokenHash: hashOf("secret"), Cert: func() Cert { c := cert("aa", "a.example"); c.DER = []byte("other"); return c }()}, t0, ErrSerialExists},
		{"unknown authority", Issue{TokenHash: hashOf("secret"), Cert: func() Cert { c := cert("01", "a.example"); c.Authority = "x"; return c }()}, t0, ErrAuthorityUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := openTest(t)
			b := &logBuilder{t: t}
			f.ApplyBatch([]*raft.Log{
				b.entry(CmdAuthorityPut, t0, authority()),
				b.entry(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{token("secret", "tok1", "a.example"), token("other", "tok2", "a.example")}}),
				b.entry(CmdIssue, t0, Issue{TokenHash: hashOf("other"), Cert: cert("aa", "a.example")}),
			})
			before := f.Digest()
			res := f.ApplyBatch([]*raft.Log{b.entry(CmdIssue, tt.at, tt.iss)})
			if err, _ := res[0].(error); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", res[0], tt.want)
			}
			if f.Digest() != before {
				t.Error("rejected entry changed state")
			}
		})
	}
}

func TestTokenCreateRejectsWholeBatchOnConflict(t *testing.T) {
	f := openTest(t)
	b := &logBuilder{t: t}
	f.ApplyBatch([]*raft.Log{b.entry(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{token("s1", "t1", "a")}})})
	before := f.Digest()
	res := f.ApplyBatch([]*raft.Log{b.entry(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{token("s2", "t2", "a"), token("s3", "t1", "a")}})})
	if err, _ := res[0].(error); !errors.Is(err, ErrConflict) {
		t.Fatalf("got %v", res[0])
	}
	if f.Digest() != before {
		t.Error("rejected batch wrote some tokens")
	}
	// The same batch proposed twice is accepted once and is a no-op the second time.
	again := b.entry(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{token("s1", "t1", "a")}})
	if res := f.ApplyBatch([]*raft.Log{again}); res[0] != nil {
		t.Fatalf("retried create: %v", res[0])
	}
	if f.Digest() != before {
		t.Error("retried create changed state")
	}
}

func TestPruneDropsExpiredTokensOnly(t *testing.T) {
	f := openTest(t)
	b := &logBuilder{t: t}
	short := token("s1", "t1", "a")
	short.ExpiresAt = t0.Add(time.Minute)
	long := token("s2", "t2", "a")
	long.ExpiresAt = t0.Add(time.Hour)
	f.ApplyBatch([]*raft.Log{b.entry(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{short, long}})})
	if !f.HasTokensExpiredBefore(t0.Add(2 * time.Minute)) {
		t.Fatal("expired token not seen")
	}
	f.ApplyBatch([]*raft.Log{b.entry(CmdTokenPrune, t0.Add(2*time.Minute), TokenPrune{Before: t0.Add(2 * time.Minute)})})
	if _, err := f.TokenByID("t1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired token kept: %v", err)
	}
	if _, err := f.TokenByHash(hashOf("s1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired token kept by hash: %v", err)
	}
	if _, err := f.TokenByID("t2"); err != nil {
		t.Errorf("live token dropped: %v", err)
	}
	if f.HasTokensExpiredBefore(t0.Add(2 * time.Minute)) {
		t.Error("prune left expired tokens")
	}
}

// Apply must be deterministic: the same log applied in different batch sizes
// to two FSMs yields identical state.
func TestDeterministicAcrossBatching(t *testing.T) {
	logs := workload(t)
	a, b := openTest(t), openTest(t)
	a.ApplyBatch(logs)
	for i := 0; i < len(logs); i += 3 {
		b.ApplyBatch(logs[i:min(i+3, len(logs))])
	}
	if a.Digest() != b.Digest() {
		t.Fatal("same log, different state")
	}
	if a.CertCount() != 24 { // 22, the ACME order's and a device's
		t.Errorf("certs = %d, want 24", a.CertCount())
	}
}

// The workload written in log format 0 (what a leader writes while a
// binary from before format 1 is in the cluster) gives the same state and
// the same verdicts as in the current format.
func TestLogFormatsApplyAlike(t *testing.T) {
	logs := workload(t)
	var old []*raft.Log
	for _, l := range logs {
		env, err := DecodeEnvelope(l.Data)
		if err != nil {
			t.Fatal(err)
		}
		data, err := env.EncodeFor(0)
		if err != nil {
			t.Fatal(err)
		}
		if data[0] != '{' {
			t.Fatalf("entry %d in format 0 is not JSON", l.Index)
		}
		c := *l
		c.Data = data
		old = append(old, &c)
	}
	cur, prev := openTest(t), openTest(t)
	want, got := cur.ApplyBatch(logs), prev.ApplyBatch(old)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("verdicts differ: %v, want %v", got, want)
	}
	if cur.Digest() != prev.Digest() {
		t.Fatal("same commands in two log formats, different state")
	}
}

func FuzzIssuePayload(f *testing.F) {
	in := Issue{TokenHash: hashOf("a"), OneTime: &OneTime{Key: []byte("k"), Expires: t0}, Renews: "0a",
		Cert: cert("01", "a.example", "b.example")}
	in.Cert.Properties = map[string]string{"k": "v"}
	f.Add(in.appendPayload(nil))
	f.Add(Issue{}.appendPayload(nil))
	f.Add(Issue{Device: "SN-1", Cert: cert("02", "sn-1.devices.example")}.appendPayload(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var in, again Issue
		if readFrame(b, &in) != nil {
			return
		}
		if err := readFrame(in.appendPayload(nil), &again); err != nil {
			t.Fatalf("re-encoded payload does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, in) {
			t.Fatalf("round trip changed the payload: %+v, then %+v", in, again)
		}
	})
}

// pack regroups single-command entries into batch entries of size
// commands each, as the leader's group commit does.
func pack(logs []*raft.Log, size int) []*raft.Log {
	var out []*raft.Log
	for i := 0; i < len(logs); i += size {
		var parts [][]byte
		for _, l := range logs[i:min(i+size, len(logs))] {
			parts = append(parts, l.Data)
		}
		out = append(out, &raft.Log{Index: uint64(len(out) + 1), Term: 1, Type: raft.LogCommand, Data: EncodeBatch(parts)})
	}
	return out
}

// A batch entry applies as its commands would one entry each: same state,
// same verdict for each command, and one audit entry per command.
func TestBatchEntriesApplyAsTheirCommands(t *testing.T) {
	logs := workload(t)
	single, batched := openTest(t), openTest(t)
	want := single.ApplyBatch(logs)
	packed := pack(logs, 4)
	var got []any
	for i := 0; i < len(packed); i += 3 { // and raft's batches on top
		for _, r := range batched.ApplyBatch(packed[i:min(i+3, len(packed))]) {
			rs, ok := r.([]any)
			if !ok {
				t.Fatalf("a batch entry answered %T, not one result per command", r)
			}
			got = append(got, rs...)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d results for %d commands", len(got), len(want))
	}
	rejected := 0
	for i := range want {
		w, _ := want[i].(error)
		g, _ := got[i].(error)
		if (w == nil) != (g == nil) || (w != nil && w.Error() != g.Error()) {
			t.Errorf("command %d: batched %v, alone %v", i, g, w)
		}
		if w != nil {
			rejected++
		}
	}
	if rejected == 0 {
		t.Fatal("the workload has no rejection to route")
	}
	if single.Digest() != batched.Digest() {
		t.Fatal("batched commands left a different state")
	}
	seq, _ := batched.AuditHead()
	if wantSeq, _ := single.AuditHead(); seq != wantSeq {
		t.Fatalf("audit has %d entries batched, %d alone", seq, wantSeq)
	}
	if batched.AppliedIndex() != uint64(len(packed)) {
		t.Fatalf("applied index %d, want %d", batched.AppliedIndex(), len(packed))
	}
}

func TestSplitBatchRefusesMalformedEntries(t *testing.T) {
	good := EncodeBatch([][]byte{[]byte(`{"a":1}`), []byte(`{"b":2}`)})
	parts, err := SplitBatch(good)
	if err != nil || len(parts) != 2 || string(parts[1]) != `{"b":2}` {
		t.Fatalf("round trip: %q, %v", parts, err)
	}
	for name, b := range map[string][]byte{
		"json":      []byte(`{"t":1}`),
		"empty":     {batchMarker, batchVersion},
		"version":   {batchMarker, 9, 1, 'x'},
		"truncated": good[:len(good)-1],
		"zero":      {batchMarker, batchVersion, 0},
		"huge":      {batchMarker, batchVersion, 0xff, 0xff, 0xff, 0xff, 0x0f, 'x'},
	} {
		if _, err := SplitBatch(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzSplitBatch(f *testing.F) {
	f.Add(EncodeBatch([][]byte{[]byte(`{"t":5}`), []byte(`{}`)}))
	f.Add([]byte{batchMarker, batchVersion, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, err := SplitBatch(b)
		if err != nil {
			return
		}
		again, err := SplitBatch(EncodeBatch(parts))
		if err != nil || len(again) != len(parts) {
			t.Fatalf("joined and split again: %d parts, %v; was %d", len(again), err, len(parts))
		}
		for i := range parts {
			if !bytes.Equal(again[i], parts[i]) {
				t.Fatalf("part %d: %q, was %q", i, again[i], parts[i])
			}
		}
	})
}

func TestSkipsEntriesAlreadyApplied(t *testing.T) {
	logs := workload(t)
	f := openTest(t)
	f.ApplyBatch(logs)
	want := f.Digest()
	// Raft replays the log after a restart; the database already holds it.
	f.ApplyBatch(logs[:10])
	f.ApplyBatch(logs)
	if f.Digest() != want {
		t.Fatal("replayed entries changed state")
	}
}

func TestReopenKeepsStateAndIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fsm.db")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := workload(t)
	f.ApplyBatch(logs)
	want := f.Digest()
	f.Close()
	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Digest() != want || g.AppliedIndex() != uint64(len(logs)) {
		t.Fatalf("reopened: index %d", g.AppliedIndex())
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := openTest(t)
	logs := workload(t)
	src.ApplyBatch(logs)

	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Apply keeps running while the snapshot is persisted; the snapshot
	// holds the state at the moment it was taken.
	want := src.Digest()
	b := &logBuilder{t: t, index: uint64(len(logs))}
	src.ApplyBatch([]*raft.Log{b.entry(CmdNodeUpsert, t0, Node{ID: "n2"})})
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := openTest(t)
	dst.ApplyBatch(workload(t)[:2]) // state to be replaced
	if err := dst.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	if dst.Digest() != want {
		t.Error("restored state differs")
	}
	if dst.AppliedIndex() != uint64(len(logs)) {
		t.Errorf("restored index %d, want %d", dst.AppliedIndex(), len(logs))
	}
	// Every record kind survived.
	if _, err := dst.Authority("default"); err != nil {
		t.Error("authority:", err)
	}
	if _, err := dst.Node("n1"); err != nil {
		t.Error("node:", err)
	}
	if _, err := dst.AdminByHash(hashOf("admin")); err != nil {
		t.Error("admin:", err)
	}
	if c, err := dst.Cert(fmt.Sprintf("%x", 1005)); err != nil || c.TokenID != "t5" {
		t.Error("cert:", c, err)
	}
	if dst.HasTokensExpiredBefore(t0.Add(3 * time.Hour)) {
		t.Error("pruned tokens came back")
	}
}

func TestRestoreRejectsGarbage(t *testing.T) {
	f := openTest(t)
	f.ApplyBatch(workload(t))
	want := f.Digest()
	if err := f.Restore(io.NopCloser(bytes.NewReader([]byte("not a database")))); err == nil {
		t.Fatal("garbage restored")
	}
	if f.Digest() != want {
		t.Error("failed restore changed state")
	}
}

func TestUnknownCommandVersionPanics(t *testing.T) {
	f := openTest(t)
	env := &Envelope{Type: CmdIssue, Version: 99, Payload: []byte("{}")}
	data, _ := env.Encode()
	defer func() {
		if recover() == nil {
			t.Fatal("a command from a newer binary was applied")
		}
	}()
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
}

// A payload that does not decode is refused, not applied and not fatal:
// every node refuses it alike and carries on.
func TestUndecodablePayloadIsRefused(t *testing.T) {
	f := openTest(t)
	before := f.Digest()
	index := uint64(0)
	for _, p := range [][]byte{[]byte("x"), []byte(`{"`), {0xff, 0x00}} {
		for _, typ := range []CmdType{CmdIssue, CmdAdminCreate, CmdRevoke, CmdTokenCreate} {
			env := &Envelope{Type: typ, Version: handlers[typ].version, Payload: p}
			data, _ := env.Encode()
			index++
			got := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
			if err, ok := got.(error); !ok || !errors.Is(err, ErrMalformed) {
				t.Errorf("%s with payload %q: %v, want %s", CommandName(typ), p, got, ErrMalformed.Code)
			}
		}
	}
	if f.Digest() != before {
		t.Error("a refused payload changed state")
	}
	if CheckProposal(&Envelope{Type: 0, Version: 1}) == nil || CheckProposal(&Envelope{Type: CmdIssue, Version: 99}) == nil ||
		CheckProposal(&Envelope{Type: CmdIssue, Version: 0}) == nil {
		t.Error("an unknown command or version passes CheckProposal")
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	env, _ := NewEnvelope(CmdIssue, "x", Issue{TokenHash: hashOf("a"), Cert: cert("01", "a")})
	env.Origin = &Origin{Actor: "token:1", Remote: "127.0.0.1"}
	seed, _ := env.Encode()
	f.Add(seed)
	old, _ := env.EncodeJSON()
	f.Add(old)
	f.Add([]byte(`{"t":5,"v":1,"p":null}`))
	f.Add([]byte{envelopeMarker, envelopeVersion, 5, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEnvelope(b)
		if err != nil {
			return
		}
		data, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeEnvelope(data)
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
		if !reflect.DeepEqual(normal(e), normal(again)) {
			t.Fatalf("round trip changed the envelope: %+v, then %+v", e, again)
		}
	})
}

// normal makes an empty payload compare equal to a nil one.
func normal(e *Envelope) *Envelope {
	c := *e
	if len(c.Payload) == 0 {
		c.Payload = nil
	}
	return &c
}

// An entry in log format 0 (a JSON envelope, issue version 2 in JSON), as
// binaries before format 1 write it and as a leader writes it while such a
// binary is in the cluster, and the same command in format 1 decode to the
// same command and apply alike.
func TestEnvelopeFramesBinaryAndJSON(t *testing.T) {
	in := Issue{TokenHash: hashOf("a"), Renews: "", Cert: cert("01", "a.example")}
	in.Cert.Properties = map[string]string{"site": "x", "batch": "7"}
	env, err := NewEnvelope(CmdIssue, "req-1", in)
	if err != nil {
		t.Fatal(err)
	}
	env.Time = t0.UnixNano()
	env.Origin = &Origin{Actor: "provisioner:p token:1", Remote: "192.0.2.7:5000"}
	bin, _ := env.EncodeFor(LogFormat)
	js, err := env.EncodeFor(0)
	if err != nil {
		t.Fatal(err)
	}
	if bin[0] != envelopeMarker || js[0] != '{' || env.Version != 3 {
		t.Fatalf("frames start with %#x and %q, version %d", bin[0], js[0], env.Version)
	}
	got, err := DecodeEnvelope(bin)
	if err != nil || !reflect.DeepEqual(got, env) {
		t.Fatalf("binary frame: decoded %+v (%v), want %+v", got, err, env)
	}
	old, err := DecodeEnvelope(js)
	if err != nil {
		t.Fatal(err)
	}
	var oldIn Issue
	if err := json.Unmarshal(old.Payload, &oldIn); err != nil || old.Version != 2 {
		t.Fatalf("format 0: version %d, payload %s (%v)", old.Version, old.Payload, err)
	}
	if !reflect.DeepEqual(oldIn, in) {
		t.Fatalf("format 0 payload %+v, want %+v", oldIn, in)
	}
	old.Version, old.Payload = env.Version, env.Payload
	if !reflect.DeepEqual(old, env) {
		t.Fatalf("format 0 envelope %+v, want %+v", old, env)
	}
	for _, n := range []int{1, 2, 3, 5, 12, 16} { // cut inside each field
		if _, err := DecodeEnvelope(bin[:n]); err == nil {
			t.Fatalf("envelope cut to %d bytes decoded", n)
		}
	}
	wrong := append([]byte{envelopeMarker, envelopeVersion + 1}, bin[2:]...)
	if _, err := DecodeEnvelope(wrong); err == nil {
		t.Fatal("an envelope of an unknown format version decoded")
	}

	// Both frames give the same state.
	var digests []string
	for _, data := range [][]byte{bin, js} {
		f, err := Open(t.TempDir() + "/fsm.db")
		if err != nil {
			t.Fatal(err)
		}
		lb := &logBuilder{t: t}
		f.ApplyBatch([]*raft.Log{
			lb.entry(CmdAuthorityPut, t0, authority()),
			lb.entry(CmdTokenCreate, t0, TokenCreate{Tokens: []Token{token("a", "t1", "a.example")}}),
		})
		if r := f.Apply(&raft.Log{Index: lb.index + 1, Type: raft.LogCommand, Data: data}); r != nil {
			t.Fatalf("apply: %v", r)
		}
		digests = append(digests, f.Digest())
		f.Close()
	}
	if digests[0] != digests[1] {
		t.Fatal("the binary and the JSON frame of one envelope gave different states")
	}
}

// The state records the newest log format of any entry applied to it, and
// a binary that reads less refuses to open it (or restore it) instead of
// panicking on an entry it cannot read.
func TestTheNewestLogFormatAppliedIsKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fsm.db")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b := &logBuilder{t: t}
	at := time.Now()
	env := func(l *raft.Log) *Envelope {
		e, err := DecodeEnvelope(l.Data)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	// Format 0: a JSON envelope of a command every release knows.
	l := b.entry(CmdTokenCreate, at, TokenCreate{Tokens: []Token{token("s1", "t1", "a.example")}})
	l.Data, _ = env(l).EncodeFor(0)
	f.ApplyBatch([]*raft.Log{l})
	if got := f.HighestLogFormat(); got != 0 {
		t.Fatalf("after a JSON entry: %d", got)
	}
	// Format 1: a binary envelope.
	f.ApplyBatch([]*raft.Log{b.entry(CmdTokenCreate, at, TokenCreate{Tokens: []Token{token("s2", "t2", "b.example")}})})
	if got := f.HighestLogFormat(); got != 1 {
		t.Fatalf("after a binary entry: %d", got)
	}
	// Format 2: a command only format-2 binaries know (refused or not).
	l = b.entry(CmdAdminWithdraw, at, map[string]any{})
	if env(l).Format() != 2 {
		t.Fatalf("admin_withdraw needs format %d", env(l).Format())
	}
	f.ApplyBatch([]*raft.Log{l})
	if got := f.HighestLogFormat(); got != 2 {
		t.Fatalf("after a format-2 command: %d", got)
	}
	f.Close()

	f, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.HighestLogFormat(); got != 2 {
		t.Fatalf("reopened: %d", got)
	}
	f.Close()
	// As a newer release would have left it.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(kLogFormat, []byte{LogFormat + 1}) })
	db.Close()
	if _, err := Open(path); !errors.Is(err, ErrNewerLogFormat) {
		t.Fatalf("opening a state of a newer log format: %v", err)
	}
}

// ServerProvisioners keeps its answer only until a provisioner is written
// or the state is restored.
func TestServerProvisionersFollowWrites(t *testing.T) {
	f := openTest(t)
	lb := &logBuilder{t: t}
	apply := func(typ CmdType, payload any) {
		t.Helper()
		if r := f.ApplyBatch([]*raft.Log{lb.entry(typ, t0, payload)}); r[0] != nil {
			t.Fatal(r[0])
		}
	}
	count := func() int {
		t.Helper()
		ps, err := f.ServerProvisioners()
		if err != nil {
			t.Fatal(err)
		}
		return len(ps)
	}
	apply(CmdAuthorityPut, authority())
	if n := count(); n != 0 {
		t.Fatalf("%d server provisioners, want 0", n)
	}
	apply(CmdProvisionerPut, ProvisionerPut{Provisioner: Provisioner{Name: "servers", Kind: KindServer, Authority: "default",
		Policy: Policy{DNS: []string{"ca.example"}, EKU: "server"}}})
	if n := count(); n != 1 {
		t.Fatalf("after a put: %d server provisioners, want 1", n)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	apply(CmdProvisionerDel, ProvisionerDelete{Name: "servers"})
	if n := count(); n != 0 {
		t.Fatalf("after a delete: %d server provisioners, want 0", n)
	}
	if err := f.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("after a restore: %d server provisioners, want 1", n)
	}
}

// The leader marks the format it writes (log_format) until the state holds
// it: the mark must raise the state to the format it names, whatever
// format the mark's own entry needs, or the leader would mark again every
// poll, forever.
func TestALogFormatMarkRaisesTheStateToItsFormat(t *testing.T) {
	f := openTest(t)
	b := &logBuilder{t: t}
	f.ApplyBatch([]*raft.Log{b.entry(CmdLogFormat, t0, LogFormatMark{Format: LogFormat})})
	if got := f.HighestLogFormat(); got != LogFormat {
		t.Fatalf("after marking format %d the state holds %d", LogFormat, got)
	}
	// A mark beyond this binary's formats is held at what it reads.
	f.ApplyBatch([]*raft.Log{b.entry(CmdLogFormat, t0, LogFormatMark{Format: LogFormat + 3})})
	if got := f.HighestLogFormat(); got != LogFormat {
		t.Fatalf("a mark of format %d left %d", LogFormat+3, got)
	}
}

// A cursor at the last possible sequence number has nothing after it (its
// successor would wrap around to the first entry).
func TestAuditAfterTheLastSequenceNumber(t *testing.T) {
	f := openTest(t)
	f.ApplyBatch(workload(t))
	page, err := f.Audit(AuditFilter{After: math.MaxUint64})
	if err != nil || len(page.Entries) != 0 {
		t.Fatalf("%d entries after 2^64-1 (%v)", len(page.Entries), err)
	}
}

package chaos

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// The checker's own tests: synthetic histories and node states, each
// breaking one property, must be caught; a clean one must pass.

func testCert(t *testing.T, serial int64) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "d.devices.chaos.test"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemOf(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// scenario is a small clean run: two enrollments, a renewal, a revocation,
// refused replays, one fault recovered from; three nodes that agree.
type scenario struct {
	ops    []Op
	states []*nodeState
	faults []Fault
	certs  map[string][]byte
}

func cleanScenario(t *testing.T) *scenario {
	s := &scenario{certs: map[string][]byte{"a": testCert(t, 0xa), "b": testCert(t, 0xb), "c": testCert(t, 0xc)}}
	s.ops = []Op{
		{Kind: OpEnroll, Device: "d1", TokenID: "t1", Start: 1, End: 1.1, Outcome: OK, Status: 201, Serial: "a", Cert: pemOf(s.certs["a"])},
		{Kind: OpEnroll, Device: "d2", TokenID: "t2", Start: 1, End: 1.2, Outcome: OK, Status: 201, Serial: "b", Cert: pemOf(s.certs["b"])},
		{Kind: OpRenew, Device: "d1", Renews: "a", Start: 2, End: 2.1, Outcome: OK, Status: 201, Serial: "c", Cert: pemOf(s.certs["c"])},
		{Kind: OpRevoke, Serial: "b", Start: 3, End: 3.2, Outcome: OK, Status: 200},
		{Kind: OpReplay, TokenID: "t1", Start: 4, End: 4.1, Outcome: Fail, Status: 409, Code: "token_used"},
		{Kind: OpReplaySame, TokenID: "t1", Start: 4, End: 4.1, Outcome: OK, Status: 201, Serial: "a", Cert: pemOf(s.certs["a"])},
		{Kind: OpEnroll, Device: "d3", TokenID: "t3", Start: 5, End: 15, Outcome: Unknown, Code: "timeout"},
		{Kind: OpRenew, Device: "d1", Renews: "c", Start: 6, End: 6.5, Outcome: Fail, Code: "eof"},
		{Kind: OpRenew, Device: "d2", Renews: "b", Start: 7, End: 7.1, Outcome: OK, Status: 201, Serial: "d", Cert: pemOf(testCert(t, 0xd))},
		{Kind: OpACMEReplay, Start: 8, End: 8.1, Outcome: Fail, Status: 400, Code: "http_400"},
	}
	s.certs["d"] = nil
	for _, op := range s.ops {
		if op.Serial == "d" {
			blk, _ := pem.Decode([]byte(op.Cert))
			s.certs["d"] = blk.Bytes
		}
	}
	for _, name := range []string{"n1", "n2", "n3"} {
		st := &nodeState{Name: name, Certs: map[string]logCert{}, CRL: map[string]bool{"b": true}, OCSP: map[string]string{"b": "revoked"}}
		st.Certs["a"] = logCert{DER: s.certs["a"], TokenID: "t1", Status: "valid"}
		st.Certs["b"] = logCert{DER: s.certs["b"], TokenID: "t2", Status: "revoked"}
		st.Certs["c"] = logCert{DER: s.certs["c"], Status: "valid", RenewedFrom: "a"}
		st.Certs["d"] = logCert{DER: s.certs["d"], Status: "valid", RenewedFrom: "b"}
		s.states = append(s.states, st)
	}
	s.faults = []Fault{{Kind: KillLeader, Targets: []string{"n1"}, Inject: 5.5, Heal: 6, Healthy: 6.2}}
	return s
}

func TestCheckerPassesCleanRun(t *testing.T) {
	s := cleanScenario(t)
	v := check(s.ops, s.states, s.faults, Bounds{})
	if !v.Pass() {
		t.Fatalf("%s\n%s", v.Line(), strings.Join(v.Details, "\n"))
	}
	if v.Acked != 4 || v.Revoked != 1 || v.Replays != 2 || v.ReplaysRefused != 1 || v.Ops != 7 || v.Failed != 2 || v.Unknown != 1 ||
		v.ACMEOrders != 0 || v.ACMEReplays != 1 || v.ACMEReplaysRefused != 1 {
		t.Errorf("counts: %+v", v)
	}
	if !strings.HasPrefix(v.Line(), "chaos: PASS lost_certs=0 divergent=0 double_tokens=0 unrevoked=0 duplicate_serials=0 slow_recovery=0") {
		t.Errorf("summary line: %s", v.Line())
	}
	if f := v.Faults[0]; f.Recovery < 1.5 || f.Recovery > 1.7 || !f.WithinBound {
		t.Errorf("recovery: %+v", f)
	}
}

// Probes that got the revocation or no answer, and 503s, are fine.
func TestCheckerAcceptsRevokedOrUnavailableProbes(t *testing.T) {
	s := cleanScenario(t)
	s.ops = append(s.ops,
		Op{Kind: OpStatusProbe, Target: "n1", Serial: "b", Outcome: OK, Status: 200, Code: "ocsp:revoked"},
		Op{Kind: OpStatusProbe, Target: "n1", Serial: "b", Outcome: OK, Status: 503, Code: "record:unavailable"},
		Op{Kind: OpStatusProbe, Target: "n2", Serial: "b", Outcome: Unknown, Error: "connection refused"},
		Op{Kind: OpEnroll, Outcome: Unknown, Status: 503, Code: "unavailable"})
	if v := check(s.ops, s.states, s.faults, Bounds{}); !v.Pass() {
		t.Fatalf("%s\n%s", v.Line(), strings.Join(v.Details, "\n"))
	}
}

func TestCheckerFindsViolations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		breaks func(s *scenario)
		want   func(v *Verdict) int
	}{
		{"a node lost an acknowledged certificate", func(s *scenario) { delete(s.states[2].Certs, "c") },
			func(v *Verdict) int { return v.LostCerts }},
		{"a node holds different bytes", func(s *scenario) {
			s.states[1].Certs["a"] = logCert{DER: s.certs["b"], TokenID: "t1"}
		}, func(v *Verdict) int { return v.LostCerts }},
		{"a node holds a certificate the others lack", func(s *scenario) {
			s.states[0].Certs["e"] = logCert{DER: testCert(t, 0xe)}
		}, func(v *Verdict) int { return v.Divergent }},
		{"a replay with a new key was accepted", func(s *scenario) {
			s.ops[4] = Op{Kind: OpReplay, TokenID: "t1", Outcome: OK, Status: 201, Serial: "c", Cert: pemOf(s.certs["c"])}
		}, func(v *Verdict) int { return v.DoubleTokens }},
		{"a same-key replay returned another certificate", func(s *scenario) {
			s.ops[5].Serial, s.ops[5].Cert = "c", pemOf(s.certs["c"])
		}, func(v *Verdict) int { return v.DoubleTokens }},
		{"the log used one token twice", func(s *scenario) {
			for _, st := range s.states {
				st.Certs["c"] = logCert{DER: s.certs["c"], TokenID: "t1"}
			}
		}, func(v *Verdict) int { return v.DoubleTokens }},
		{"a CRL lacks a revocation", func(s *scenario) { s.states[1].CRL = map[string]bool{} },
			func(v *Verdict) int { return v.Unrevoked }},
		{"no CRL at all", func(s *scenario) { s.states[1].CRL, s.states[1].CRLErr = nil, "503" },
			func(v *Verdict) int { return v.Unrevoked }},
		{"OCSP says good", func(s *scenario) { s.states[0].OCSP["b"] = "good" },
			func(v *Verdict) int { return v.Unrevoked }},
		{"a serial names two certificates", func(s *scenario) {
			s.ops = append(s.ops, Op{Kind: OpRenew, Outcome: OK, Serial: "a", Cert: pemOf(testCert(t, 0xa))})
		}, func(v *Verdict) int { return v.DuplicateSerials }},
		{"a node lists a serial twice", func(s *scenario) { s.states[0].Dups = []string{"a"} },
			func(v *Verdict) int { return v.DuplicateSerials }},
		{"recovery too slow", func(s *scenario) { s.faults[0].Inject = -10 },
			func(v *Verdict) int { return v.SlowRecovery }},
		{"never whole again", func(s *scenario) { s.faults[0].Healthy = 0 },
			func(v *Verdict) int { return v.SlowRecovery }},
		{"a node could not be read", func(s *scenario) { s.states[2].Err = "connection refused" },
			func(v *Verdict) int { return v.LostCerts }},
		{"a resumed node's OCSP said good", func(s *scenario) {
			s.ops = append(s.ops, Op{Kind: OpStatusProbe, Target: "n2", Serial: "b", Outcome: OK, Status: 200, Code: "ocsp:good"})
		}, func(v *Verdict) int { return v.StaleStatus }},
		{"a restarted node's record said valid", func(s *scenario) {
			s.ops = append(s.ops, Op{Kind: OpStatusProbe, Target: "n3", Serial: "b", Outcome: OK, Status: 200, Code: "record:valid"})
		}, func(v *Verdict) int { return v.StaleStatus }},
		{"a request was answered 500", func(s *scenario) {
			s.ops = append(s.ops, Op{Kind: OpEnroll, Outcome: Unknown, Status: 500, Code: "internal"})
		}, func(v *Verdict) int { return v.ServerErrors }},
		{"an ACME account has more certificates than orders", func(s *scenario) {
			s.ops = append(s.ops, Op{Kind: OpACMEOrder, Account: "acme:acme/x", Outcome: Unknown, Code: "timeout"})
			for _, st := range s.states {
				st.Certs["e"] = logCert{DER: s.certs["a"][:0:0], Requester: "acme:acme/x"}
				st.Certs["f"] = logCert{DER: s.certs["a"][:0:0], Requester: "acme:acme/x"}
			}
		}, func(v *Verdict) int { return v.DoubleOrders }},
		{"a replayed ACME request was accepted", func(s *scenario) {
			s.ops = append(s.ops, Op{Kind: OpACMEReplay, Outcome: OK, Status: 200})
		}, func(v *Verdict) int { return v.NonceReuse }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := cleanScenario(t)
			tc.breaks(s)
			v := check(s.ops, s.states, s.faults, Bounds{})
			if v.Pass() || tc.want(v) == 0 {
				t.Fatalf("not caught: %s\n%s", v.Line(), strings.Join(v.Details, "\n"))
			}
			if !strings.HasPrefix(v.Line(), "chaos: FAIL") || len(v.Details) == 0 {
				t.Errorf("summary: %s, details %q", v.Line(), v.Details)
			}
		})
	}
}

func TestAvailabilityRestartCountsFromRestart(t *testing.T) {
	ops := []Op{
		{Kind: OpRenew, Start: 10, End: 10.1, Outcome: Fail},
		{Kind: OpRenew, Start: 14, End: 17, Outcome: OK},
		{Kind: OpReplay, Start: 13, End: 13.1, Outcome: Fail, Status: 409},
	}
	r := availability(ops, []Fault{{Kind: RestartAll, Inject: 10, Heal: 13, Healthy: 16}}, Bounds{})
	if len(r) != 1 || r[0].From != 13 || r[0].Recovery != 4 || !r[0].WithinBound || r[0].Ops != 2 || r[0].Failed != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestSchedules(t *testing.T) {
	short := schedule(true, 0, 1)
	if len(short) != len(AllFaults) {
		t.Fatalf("short schedule: %d faults", len(short))
	}
	long := schedule(false, 10*time.Minute, 7)
	seen := map[string]bool{}
	var total time.Duration
	for _, s := range long {
		seen[s.kind] = true
		total += s.hold + s.quiet
	}
	if len(seen) != len(AllFaults) || total > 10*time.Minute || total < 6*time.Minute {
		t.Fatalf("long schedule: %d kinds, %s", len(seen), total)
	}
}

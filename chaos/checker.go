package chaos

import (
	"bytes"
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"sort"
	"strings"
)

// Verdict is what the checker found. A run passes when every violation
// count is zero.
type Verdict struct {
	// Safety, against every node's state after healing.
	LostCerts        int // acknowledged certificates missing from, or different in, some node's issued log
	Divergent        int // certificates in some node's log that another node lacks or holds differently
	DoubleTokens     int // tokens that produced two certificates, and replays with a new key that were accepted
	Unrevoked        int // acknowledged revocations some node's CRL or OCSP does not report
	DuplicateSerials int // serials with two different certificates
	// ACME: an account with more certificates in the issued log than
	// orders it made (an order filled twice), and a signed request sent
	// again whose nonce was accepted a second time.
	DoubleOrders, NonceReuse int
	// Answers, during the run.
	StaleStatus  int // a node coming back from a fault said good for a revocation acknowledged before
	ServerErrors int // 5xx answers other than 503 (which says: not now, retry)
	// Availability.
	SlowRecovery int // faults the cluster did not recover from within the bound, or at all
	Faults       []FaultReport

	Details []string // one line per violation (the first few of each kind)

	// Requests, replays excluded: all, those not ok, and those unknown.
	Ops, Failed, Unknown int
	// Certificates and revocations acknowledged.
	Acked, Revoked int
	// Replays: all, refused with a 4xx, answered neither way.
	Replays, ReplaysRefused, ReplaysUndecided int
	// ACME: orders made and filled; signed requests replayed, and refused.
	ACMEOrders, ACMECerts, ACMEReplays, ACMEReplaysRefused int
	// Definite refusals the workload did not provoke, by op/code.
	UnexpectedCodes map[string]int

	Nodes   int
	Seconds float64
}

// Pass reports whether no property was violated.
func (v *Verdict) Pass() bool {
	return v.LostCerts+v.Divergent+v.DoubleTokens+v.Unrevoked+v.DuplicateSerials+v.SlowRecovery+v.StaleStatus+v.ServerErrors+
		v.DoubleOrders+v.NonceReuse == 0
}

// Line is the checker's summary line: each property with its count.
func (v *Verdict) Line() string {
	verdict := "PASS"
	if !v.Pass() {
		verdict = "FAIL"
	}
	return fmt.Sprintf("chaos: %s lost_certs=%d divergent=%d double_tokens=%d unrevoked=%d duplicate_serials=%d slow_recovery=%d stale_status=%d server_errors=%d double_orders=%d nonce_reuse=%d (ops=%d, failed=%.1f%%, unknown=%d, certs=%d, revocations=%d, replays=%d, acme_orders=%d, acme_certs=%d, acme_replays=%d, faults=%d, nodes=%d, %.0fs)",
		verdict, v.LostCerts, v.Divergent, v.DoubleTokens, v.Unrevoked, v.DuplicateSerials, v.SlowRecovery, v.StaleStatus, v.ServerErrors,
		v.DoubleOrders, v.NonceReuse, v.Ops, pct(v.Failed, v.Ops), v.Unknown, v.Acked, v.Revoked, v.Replays, v.ACMEOrders, v.ACMECerts,
		v.ACMEReplays, len(v.Faults), v.Nodes, v.Seconds)
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

const maxDetails = 20 // per kind

type details struct {
	lines []string
	count map[string]int
}

func (d *details) add(kind, format string, args ...any) {
	if d.count == nil {
		d.count = map[string]int{}
	}
	d.count[kind]++
	if d.count[kind] <= maxDetails {
		d.lines = append(d.lines, kind+": "+fmt.Sprintf(format, args...))
	}
}

// expected refusals: what the workload provokes on purpose or meets in
// the normal course (a device renewing a certificate the admin revoked).
var expectedCodes = map[string]bool{
	OpRenew + "/certificate_revoked": true,
	OpReplay + "/token_used":         true,
	OpReplaySame + "/token_used":     true,
	// A factory device's listed entry, spent, is refused as enrolled.
	OpReplay + "/device_enrolled":     true,
	OpReplaySame + "/device_enrolled": true,
	OpRevoke + "/overloaded":          true,
	OpEnroll + "/overloaded":          true,
	OpRenew + "/overloaded":           true,
}

// check runs every check of the history against the nodes' states.
func check(ops []Op, states []*nodeState, faults []Fault, bounds Bounds) *Verdict {
	k := &checker{v: &Verdict{Nodes: len(states), UnexpectedCodes: map[string]int{}},
		acked: map[string][]byte{}, tokenCerts: map[string][]string{}, der: map[string]map[[32]byte]bool{}, revoked: map[string]bool{},
		orders: map[string]int{}}
	k.history(ops)
	k.logs(states)
	k.revocations(states)
	v := k.v
	v.Faults = availability(ops, faults, bounds)
	for _, f := range v.Faults {
		if !f.WithinBound {
			v.SlowRecovery++
			k.d.add("slow_recovery", "%s", f.describe())
		}
	}
	for kind, n := range k.d.count {
		if n > maxDetails {
			k.d.lines = append(k.d.lines, fmt.Sprintf("%s: ... %d more", kind, n-maxDetails))
		}
	}
	sort.Strings(k.d.lines)
	v.Details = k.d.lines
	return v
}

type checker struct {
	v *Verdict
	d details

	acked      map[string][]byte            // serial -> DER of every acknowledged certificate
	tokenCerts map[string][]string          // token ID -> serials acknowledged for it
	der        map[string]map[[32]byte]bool // serial -> every distinct DER seen anywhere
	revoked    map[string]bool              // serials whose revocation was acknowledged
	orders     map[string]int               // ACME account -> orders it made
}

func (k *checker) see(serial string, b []byte) {
	if k.der[serial] == nil {
		k.der[serial] = map[[32]byte]bool{}
	}
	k.der[serial][sha256.Sum256(b)] = true
}

// history counts the requests and collects what clients were promised.
func (k *checker) history(ops []Op) {
	v := k.v
	for _, op := range ops {
		if op.Kind == OpNemesis {
			continue
		}
		if op.Status >= 500 && op.Status != 503 {
			v.ServerErrors++
			k.d.add("server_errors", "op %d (%s) was answered %d %s: %s", op.Seq, op.Kind, op.Status, op.Code, op.Error)
		}
		if op.Kind == OpStatusProbe {
			if strings.HasSuffix(op.Code, ":good") || strings.HasSuffix(op.Code, ":valid") {
				v.StaleStatus++
				k.d.add("stale_status", "%s answered %s for %s at %.1fs, revoked before (%s)", op.Target, op.Code, op.Serial, op.Start, op.Error)
			}
			continue
		}
		v.Seconds = max(v.Seconds, op.End)
		if op.Kind == OpACMEReplay {
			v.ACMEReplays++
			switch op.Outcome {
			case OK:
				v.NonceReuse++
				k.d.add("nonce_reuse", "a signed ACME request sent again was accepted (op %d at %.1fs, %s)", op.Seq, op.Start, op.Error)
			case Fail:
				v.ACMEReplaysRefused++
			}
			continue
		}
		if op.Kind == OpACMEOrder {
			v.ACMEOrders++
			k.orders[op.Account]++
		}
		if op.Kind == OpReplay || op.Kind == OpReplaySame {
			v.Replays++
			switch {
			case op.Outcome == Fail && op.Status/100 == 4:
				v.ReplaysRefused++
			case op.Outcome == Unknown:
				v.ReplaysUndecided++
			}
		} else {
			v.Ops++
			if op.Outcome != OK {
				v.Failed++
			}
			if op.Outcome == Unknown {
				v.Unknown++
			}
		}
		if op.Outcome == Fail && op.Status/100 == 4 && !expectedCodes[op.Kind+"/"+op.Code] {
			v.UnexpectedCodes[op.Kind+"/"+op.Code]++
		}
		if op.Outcome != OK {
			continue
		}
		switch op.Kind {
		case OpEnroll, OpRenew, OpReplay, OpReplaySame, OpACMEOrder:
			blk, _ := pem.Decode([]byte(op.Cert))
			if blk == nil || op.Serial == "" {
				v.LostCerts++
				k.d.add("lost_certs", "op %d (%s) was acknowledged without a certificate", op.Seq, op.Kind)
				continue
			}
			serial := normSerial(op.Serial)
			k.acked[serial] = blk.Bytes // two different ones: counted in logs
			k.see(serial, blk.Bytes)
			if op.Kind == OpReplay {
				v.DoubleTokens++
				k.d.add("double_tokens", "token %s was accepted again with a new key (op %d, serial %s)", op.TokenID, op.Seq, serial)
			}
			if op.TokenID != "" && !contains(k.tokenCerts[op.TokenID], serial) {
				k.tokenCerts[op.TokenID] = append(k.tokenCerts[op.TokenID], serial)
			}
		case OpRevoke:
			k.revoked[normSerial(op.Serial)] = true
		}
	}
	v.Acked, v.Revoked = len(k.acked), len(k.revoked)
	for _, id := range sortedKeys(k.tokenCerts) {
		if serials := k.tokenCerts[id]; len(serials) > 1 {
			v.DoubleTokens++
			k.d.add("double_tokens", "token %s was acknowledged with %d certificates: %s", id, len(serials), strings.Join(serials, ", "))
		}
	}
}

// logs checks the nodes' issued logs: every acknowledged certificate in
// each, byte for byte (1); the same log on every node; no token used twice
// in them (2); no serial naming two certificates (4).
func (k *checker) logs(states []*nodeState) {
	v := k.v
	for _, serial := range sortedKeys(k.acked) {
		var missing []string
		for _, st := range states {
			c, ok := st.Certs[serial]
			switch {
			case st.Err != "":
				missing = append(missing, st.Name+" (unreadable)")
			case !ok:
				missing = append(missing, st.Name+" (absent)")
			case !bytes.Equal(c.DER, k.acked[serial]):
				missing = append(missing, st.Name+" (different bytes)")
			}
		}
		if len(missing) > 0 {
			v.LostCerts++
			k.d.add("lost_certs", "acknowledged certificate %s: %s", serial, strings.Join(missing, ", "))
		}
	}
	logTokens := map[string]map[string]bool{} // token ID -> serials, over every node's log
	all := map[string]bool{}
	for _, st := range states {
		for serial, c := range st.Certs {
			all[serial] = true
			k.see(serial, c.DER)
			if c.TokenID != "" {
				if logTokens[c.TokenID] == nil {
					logTokens[c.TokenID] = map[string]bool{}
				}
				logTokens[c.TokenID][serial] = true
			}
		}
		for _, s := range st.Dups {
			v.DuplicateSerials++
			k.d.add("duplicate_serials", "%s lists serial %s twice", st.Name, s)
		}
	}
	for _, serial := range sortedKeys(all) {
		var off []string
		var first []byte
		for _, st := range states {
			if st.Err != "" {
				continue
			}
			c, ok := st.Certs[serial]
			switch {
			case !ok:
				off = append(off, st.Name+" lacks it")
			case first == nil:
				first = c.DER
			case !bytes.Equal(first, c.DER):
				off = append(off, st.Name+" differs")
			}
		}
		if len(off) > 0 {
			v.Divergent++
			k.d.add("divergent", "certificate %s: %s", serial, strings.Join(off, ", "))
		}
	}
	for _, id := range sortedKeys(logTokens) {
		if serials := logTokens[id]; len(serials) > 1 && len(k.tokenCerts[id]) <= 1 {
			v.DoubleTokens++
			k.d.add("double_tokens", "token %s was used for %d certificates in the issued log: %s", id, len(serials), strings.Join(sortedKeys(serials), ", "))
		}
	}
	// One certificate per order: an account never has more certificates
	// than orders it made (whatever their outcome).
	acmeCerts := map[string]map[string]bool{}
	for _, st := range states {
		for serial, c := range st.Certs {
			if strings.HasPrefix(c.Requester, "acme:") {
				if acmeCerts[c.Requester] == nil {
					acmeCerts[c.Requester] = map[string]bool{}
				}
				acmeCerts[c.Requester][serial] = true
			}
		}
	}
	for _, acc := range sortedKeys(acmeCerts) {
		v.ACMECerts += len(acmeCerts[acc])
		if n := len(acmeCerts[acc]); n > k.orders[acc] {
			v.DoubleOrders++
			k.d.add("double_orders", "ACME account %s has %d certificates in the issued log for %d orders", acc, n, k.orders[acc])
		}
	}
	for _, serial := range sortedKeys(k.der) {
		if n := len(k.der[serial]); n > 1 {
			v.DuplicateSerials++
			k.d.add("duplicate_serials", "serial %s names %d different certificates", serial, n)
		}
	}
}

// revocations checks that every acknowledged revocation shows in every
// node's CRL, OCSP answer and record (3).
func (k *checker) revocations(states []*nodeState) {
	for _, serial := range sortedKeys(k.revoked) {
		var bad []string
		for _, st := range states {
			if st.Err != "" {
				bad = append(bad, st.Name+" unreadable")
				continue
			}
			if st.CRL == nil {
				bad = append(bad, st.Name+" has no CRL ("+st.CRLErr+")")
			} else if !st.CRL[serial] {
				bad = append(bad, st.Name+" CRL lacks it")
			}
			if o := st.OCSP[serial]; o != "revoked" {
				bad = append(bad, fmt.Sprintf("%s OCSP says %q", st.Name, o))
			}
			if c, ok := st.Certs[serial]; ok && c.Status != "revoked" {
				bad = append(bad, fmt.Sprintf("%s record says %q", st.Name, c.Status))
			}
		}
		if len(bad) > 0 {
			k.v.Unrevoked++
			k.d.add("unrevoked", "revocation of %s was acknowledged: %s", serial, strings.Join(bad, "; "))
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

package chaos

import (
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/quorumca/quorumca/bench"
)

// writeSummary writes the verdict as a table for people.
func writeSummary(w io.Writer, v *Verdict, ops []Op, cfg Config) {
	fmt.Fprintln(w, v.Line())
	fmt.Fprintf(w, "\nrun: %d nodes, %d devices, seed %d, short=%v\n", cfg.Nodes, cfg.Devices, cfg.Seed, cfg.Short)

	fmt.Fprintln(w, "\nproperties (violations):")
	for _, p := range []struct {
		name string
		n    int
		what string
	}{
		{"lost_certs", v.LostCerts, "acknowledged certificates absent from or different in a node's issued log"},
		{"divergent", v.Divergent, "certificates the nodes' logs disagree on"},
		{"double_tokens", v.DoubleTokens, "tokens accepted twice (two certificates, or a replay with a new key accepted)"},
		{"unrevoked", v.Unrevoked, "acknowledged revocations missing from a node's CRL, OCSP or record"},
		{"duplicate_serials", v.DuplicateSerials, "serials naming two different certificates"},
		{"slow_recovery", v.SlowRecovery, "faults not recovered from within the bound"},
		{"stale_status", v.StaleStatus, "answers of good for a revocation acknowledged before, by a node coming back from a fault"},
		{"server_errors", v.ServerErrors, "5xx answers other than 503"},
	} {
		fmt.Fprintf(w, "  %-18s %6d  %s\n", p.name, p.n, p.what)
	}

	type counts struct{ ok, fail, unknown int }
	byKind := map[string]*counts{}
	for _, op := range ops {
		if op.Kind == OpNemesis {
			continue
		}
		kind := op.Kind
		if op.Via != "" {
			kind += " (" + op.Via + ")"
		}
		c := byKind[kind]
		if c == nil {
			c = &counts{}
			byKind[kind] = c
		}
		switch op.Outcome {
		case OK:
			c.ok++
		case Fail:
			c.fail++
		default:
			c.unknown++
		}
	}
	fmt.Fprintf(w, "\nrequests:\n  %-12s %8s %8s %8s\n", "op", "ok", "fail", "unknown")
	for _, k := range []string{OpEnroll, OpEnroll + " (est)", OpEnroll + " (scep)", OpEnroll + " (x5c)", OpRenew, OpRenew + " (est)", OpRevoke, OpReplay, OpReplaySame, OpStatusProbe} {
		if c := byKind[k]; c != nil {
			fmt.Fprintf(w, "  %-12s %8d %8d %8d\n", k, c.ok, c.fail, c.unknown)
		}
	}
	fmt.Fprintf(w, "  replays refused (4xx) %d of %d; undecided (5xx, timeout) %d\n", v.ReplaysRefused, v.Replays, v.ReplaysUndecided)
	fmt.Fprintf(w, "  ACME: %d orders, %d certificates in the issued log; signed requests replayed %d, refused %d\n",
		v.ACMEOrders, v.ACMECerts, v.ACMEReplays, v.ACMEReplaysRefused)
	fmt.Fprintf(w, "  failed share (replays excluded): %.2f%% of %d; unknown outcomes %d\n", pct(v.Failed, v.Ops), v.Ops, v.Unknown)
	if len(v.UnexpectedCodes) > 0 {
		fmt.Fprint(w, "  unexpected refusals:")
		for _, k := range sortedKeys(v.UnexpectedCodes) {
			fmt.Fprintf(w, " %s=%d", k, v.UnexpectedCodes[k])
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintf(w, "\nfaults (seconds since start):\n  %-3s %-19s %-14s %7s %7s %7s %9s %6s %6s %7s  %s\n",
		"#", "fault", "targets", "inject", "heal", "whole", "recovery", "bound", "ops", "failed", "verdict")
	for i, f := range v.Faults {
		rec, whole := "never", "never"
		if f.Recovery >= 0 {
			rec = fmt.Sprintf("%.1f", f.Recovery)
		}
		if f.Healthy > 0 {
			whole = fmt.Sprintf("%.1f", f.Healthy)
		}
		verdict := "ok"
		if !f.WithinBound {
			verdict = "SLOW"
			if f.Err != "" {
				verdict = "ERROR: " + f.Err
			}
		}
		fmt.Fprintf(w, "  %-3d %-19s %-14s %7.1f %7.1f %7s %9s %6.0f %6d %6.1f%%  %s\n", i+1, f.Kind,
			strings.Join(f.Targets, ","), f.Inject, f.Heal, whole, rec, f.Bound, f.Ops, pct(f.Failed, f.Ops), verdict)
	}
	if len(v.Details) > 0 {
		fmt.Fprintln(w, "\nviolations:")
		for _, d := range v.Details {
			fmt.Fprintln(w, "  "+d)
		}
	}
}

// writeTimeline plots requests per second (ok and failed) and latency over
// the run, with each fault shaded from injection to healing (dark) and on
// to the cluster being whole again (light).
func writeTimeline(path string, ops []Op, faults []Fault, title string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	timeline(f, ops, faults, title)
	return f.Close()
}

func timeline(w io.Writer, ops []Op, faults []Fault, title string) {
	const width, panel, left, right, top, gap = 960, 200, 60, 20, 50, 50
	height := top + 2*panel + gap + 40
	end := 1.0
	for _, op := range ops {
		end = math.Max(end, op.End)
	}
	n := int(math.Ceil(end))
	okS, failS := make([]float64, n), make([]float64, n)
	lat := make([][]float64, n)
	for _, op := range ops {
		if !isLoad(op) {
			continue
		}
		s := min(int(op.End), n-1)
		if op.Outcome == OK {
			okS[s]++
			lat[s] = append(lat[s], 1000*(op.End-op.Start))
		} else {
			failS[s]++
		}
	}
	p50, p99 := make([]float64, n), make([]float64, n)
	for i, l := range lat {
		slices.Sort(l)
		p50[i], p99[i] = bench.SortedPercentile(l, 0.5), bench.SortedPercentile(l, 0.99)
	}
	plotW := float64(width - left - right)
	x := func(t float64) float64 { return float64(left) + plotW*t/float64(n) }
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%d" y="22" font-size="13">%s</text>`+"\n", left, bench.EscapeXML(title))
	// Faults, across both panels.
	y0, y1 := top, top+2*panel+gap
	for i, f := range faults {
		healthy := f.Healthy
		if healthy == 0 {
			healthy = end
		}
		fmt.Fprintf(w, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#f4a582" fill-opacity="0.45"/>`+"\n",
			x(f.Inject), y0, math.Max(1, x(f.Heal)-x(f.Inject)), y1-y0)
		fmt.Fprintf(w, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#fddbc7" fill-opacity="0.5"/>`+"\n",
			x(f.Heal), y0, math.Max(0, x(healthy)-x(f.Heal)), y1-y0)
		label := fmt.Sprintf("%d %s", i+1, f.Kind)
		if len(faults) > 8 {
			label = fmt.Sprint(i + 1) // the kinds are in summary.txt
		}
		fmt.Fprintf(w, `<text x="%.1f" y="%d" font-size="9" fill="#b2182b">%s</text>`+"\n", x(f.Inject)+1, y0+10+10*(i%2), bench.EscapeXML(label))
	}
	drawPanel := func(y0 int, label string, series [][]float64, names, colors []string) {
		maxV := 1.0
		for _, s := range series {
			for _, v := range s {
				maxV = math.Max(maxV, v)
			}
		}
		fmt.Fprintf(w, `<rect x="%d" y="%d" width="%.0f" height="%d" fill="none" stroke="#999"/>`+"\n", left, y0, plotW, panel)
		fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="middle" transform="rotate(-90 %d %d)">%s</text>`+"\n", 14, y0+panel/2, 14, y0+panel/2, bench.EscapeXML(label))
		for k := 0; k <= 4; k++ {
			v := maxV * float64(k) / 4
			y := float64(y0+panel) - float64(panel)*float64(k)/4
			fmt.Fprintf(w, `<text x="%d" y="%.0f" text-anchor="end">%s</text>`+"\n", left-4, y+4, bench.ShortNumber(v))
			fmt.Fprintf(w, `<line x1="%d" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#eee"/>`+"\n", left, y, float64(left)+plotW, y)
		}
		for si, s := range series {
			var pts []string
			for i, v := range s {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(i)+0.5), float64(y0+panel)-float64(panel)*v/maxV))
			}
			fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="1.2" points="%s"/>`+"\n", colors[si], strings.Join(pts, " "))
			fmt.Fprintf(w, `<text x="%.0f" y="%d" fill="%s">%s</text>`+"\n", float64(left)+plotW-220+float64(si)*100, y0-6, colors[si], bench.EscapeXML(names[si]))
		}
	}
	drawPanel(top, "requests per second", [][]float64{okS, failS}, []string{"ok", "failed or unknown"}, []string{"#2166ac", "#d62728"})
	drawPanel(top+panel+gap, "latency of ok requests (ms)", [][]float64{p50, p99}, []string{"p50", "p99"}, []string{"#1b7837", "#e08214"})
	for t := 0; t <= n; t += tick(n) {
		fmt.Fprintf(w, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(float64(t)), height-22, t)
	}
	fmt.Fprintf(w, `<text x="%d" y="%d">seconds since start; dark: fault in place, light: healed, cluster not yet whole</text>`+"\n", left, height-6)
	fmt.Fprintln(w, "</svg>")
}

func tick(n int) int {
	for _, t := range []int{10, 30, 60, 120, 300, 600} {
		if n/t <= 12 {
			return t
		}
	}
	return 1200
}

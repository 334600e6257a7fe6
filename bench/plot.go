package bench

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// WriteSVG plots a result's rate and latency over time: two panels, one
// point per second.
func (r *Result) WriteSVG(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r.svg(f)
	return f.Close()
}

func (r *Result) svg(w io.Writer) {
	const width, panel, left, top, gap = 760, 200, 60, 40, 50
	height := top + 2*panel + gap + 40
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	title := fmt.Sprintf("quorumca bench %s %s: %.0f certs/s, p99 %.1f ms, %d errors", r.Kind, r.Operation, r.CertsPerSecond, r.P99ms, r.Errors)
	fmt.Fprintf(w, `<text x="%d" y="20" font-size="13">%s</text>`+"\n", left, EscapeXML(title))
	n := len(r.Series)
	plotW := float64(width - left - 20)
	x := func(i int) float64 { return float64(left) + plotW*float64(i)/math.Max(1, float64(n-1)) }
	panelFn := func(y0 int, label string, series map[string][]float64, colors map[string]string, order []string) {
		maxV := 0.0
		for _, s := range series {
			for _, v := range s {
				maxV = math.Max(maxV, v)
			}
		}
		if maxV == 0 {
			maxV = 1
		}
		fmt.Fprintf(w, `<rect x="%d" y="%d" width="%.0f" height="%d" fill="none" stroke="#999"/>`+"\n", left, y0, plotW, panel)
		fmt.Fprintf(w, `<text x="%d" y="%d">%s</text>`+"\n", left, y0-6, EscapeXML(label))
		for k := 0; k <= 4; k++ {
			v := maxV * float64(k) / 4
			y := float64(y0+panel) - float64(panel)*float64(k)/4
			fmt.Fprintf(w, `<text x="%d" y="%.0f" text-anchor="end">%s</text>`+"\n", left-4, y+4, ShortNumber(v))
			fmt.Fprintf(w, `<line x1="%d" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#eee"/>`+"\n", left, y, float64(left)+plotW, y)
		}
		for li, name := range order {
			var pts []string
			for i, v := range series[name] {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), float64(y0+panel)-float64(panel)*v/maxV))
			}
			fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", colors[name], strings.Join(pts, " "))
			fmt.Fprintf(w, `<text x="%.0f" y="%d" fill="%s">%s</text>`+"\n", float64(left)+plotW-160+float64(li)*60, y0-6, colors[name], EscapeXML(name))
		}
	}
	rate, errs, p50, p99 := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	for i, s := range r.Series {
		rate[i], errs[i], p50[i], p99[i] = s.Rate, float64(s.Errors), s.P50ms, s.P99ms
	}
	panelFn(top, "certificates per second", map[string][]float64{"ok": rate, "errors": errs},
		map[string]string{"ok": "#1f77b4", "errors": "#d62728"}, []string{"ok", "errors"})
	panelFn(top+panel+gap, "latency (ms)", map[string][]float64{"p50": p50, "p99": p99},
		map[string]string{"p50": "#2ca02c", "p99": "#ff7f0e"}, []string{"p50", "p99"})
	fmt.Fprintf(w, `<text x="%d" y="%d">seconds (0-%d)</text>`+"\n", left, height-10, n)
	fmt.Fprintln(w, "</svg>")
}

// ShortNumber writes an axis label: 12k, 340, 1.5.
func ShortNumber(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.0fk", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// EscapeXML escapes text for SVG.
func EscapeXML(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// Compare prints how b differs from a.
func Compare(w io.Writer, a, b *Result) {
	fmt.Fprintf(w, "%-22s %14s %14s %9s\n", "", "A", "B", "change")
	row := func(name string, x, y float64, higherBetter bool) {
		change := "-"
		if x != 0 {
			pct := 100 * (y - x) / x
			mark := ""
			if (pct > 0) == higherBetter && math.Abs(pct) >= 5 {
				mark = " better"
			} else if math.Abs(pct) >= 5 {
				mark = " worse"
			}
			change = fmt.Sprintf("%+.1f%%%s", pct, mark)
		}
		fmt.Fprintf(w, "%-22s %14.2f %14.2f %9s\n", name, x, y, change)
	}
	fmt.Fprintf(w, "%-22s %14s %14s\n", "run", a.Kind+" "+a.Operation, b.Kind+" "+b.Operation)
	row("certs_per_second", a.CertsPerSecond, b.CertsPerSecond, true)
	row("p50_ms", a.P50ms, b.P50ms, false)
	row("p90_ms", a.P90ms, b.P90ms, false)
	row("p99_ms", a.P99ms, b.P99ms, false)
	row("p99.9_ms", a.P999ms, b.P999ms, false)
	row("max_ms", a.MaxMs, b.MaxMs, false)
	row("errors", float64(a.Errors), float64(b.Errors), false)
	if a.Machine != b.Machine {
		fmt.Fprintf(w, "note: different machines (%d CPUs %s vs %d CPUs %s): compare ratios, not figures\n",
			a.Machine.CPUs, a.Machine.Model, b.Machine.CPUs, b.Machine.Model)
	}
}

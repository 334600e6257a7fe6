package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat: USER_HZ, 100 on
// every Linux architecture Go supports.
const userHZ = 100

// ProcCPU is the CPU time (user + system) that process pid has used, from
// /proc/PID/stat.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(string(b))
}

// parseStat reads utime and stime (fields 14 and 15) from a
// /proc/PID/stat line. The command name (field 2) may hold spaces and
// parentheses: fields are counted from its last ')'.
func parseStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command name")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields", len(f)+2)
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMark is the CPU used so far by a CA process and by the harness.
type cpuMark struct {
	ca, self time.Duration
	ok       bool
}

func markCPU(pid int) cpuMark {
	if pid <= 0 {
		return cpuMark{}
	}
	ca, err := ProcCPU(pid)
	return cpuMark{ca: ca, self: selfCPU(), ok: err == nil}
}

// report sets res's CPU per certificate from the CPU used since m.
func (m cpuMark) report(pid int, res *Result) {
	ok := res.Requests - res.Errors
	if !m.ok || ok <= 0 {
		return
	}
	ca, err := ProcCPU(pid)
	if err != nil {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(ok) }
	res.CACPUms, res.HarnessCPUms = ms(ca-m.ca), ms(selfCPU()-m.self)
}

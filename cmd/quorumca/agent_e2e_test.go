//go:build !agent

package main

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quorumca/quorumca/agent"
	"github.com/quorumca/quorumca/internal/testwait"
)

// buildAgent builds the device agent (-tags agent, static) for arch.
func buildAgent(t *testing.T, arch string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "quorumca-agent-"+arch)
	cmd := exec.Command("go", "build", "-tags", "agent", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOARM=7")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent for %s: %v\n%s", arch, err, out)
	}
	return bin
}

// runBin runs bin and returns its exit status and output.
func runBin(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// procStat reads a process's resident memory (kB) and CPU time (ticks).
func procStat(t *testing.T, pid int) (rssKB int, ticks int) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			rssKB, _ = strconv.Atoi(f[1])
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): utime and
	// stime are the 12th and 13th.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return rssKB, u + s
}

// The device build of the agent against a dev CA, as processes: a bundle
// from the CLI, enrollment with -once, status, an idle daemon's memory and
// CPU, and the exit status once its certificate is revoked.
func TestAgentProcess(t *testing.T) {
	requireTools(t, "openssl")
	dir := t.TempDir()
	ca, _, env := startDev(t, dir)
	bundles := t.TempDir()
	if code, out := runBin(t, binary, env, "token", "create", "-sans", "device1.example", "-bundle-dir", bundles); code != 0 {
		t.Fatalf("token create -bundle-dir: %d %s", code, out)
	}
	bundle := filepath.Join(bundles, "device1.example.json")
	bin := buildAgent(t, runtime.GOARCH)
	adir := filepath.Join(t.TempDir(), "agent")
	args := []string{"agent", "-dir", adir, "-bundle", bundle}

	if code, out := runBin(t, bin, nil, append(args, "-once")...); code != 0 {
		t.Fatalf("agent -once: %d %s", code, out)
	}
	if out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(adir, "roots.pem"),
		"-untrusted", filepath.Join(adir, "chain.pem"), filepath.Join(adir, "cert.pem")).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify: %v %s", err, out)
	}
	if b, err := agent.ReadBundle(bundle); err != nil || b.Token != "" {
		t.Fatalf("bundle after enrollment: %+v %v", b, err)
	}
	code, out := runBin(t, bin, nil, "agent", "status", "-dir", adir)
	if code != 0 || !strings.Contains(out, "device1.example") || !strings.Contains(out, "enrolled") {
		t.Fatalf("agent status: %d\n%s", code, out)
	}

	// The daemon, once it has checked, sleeps: small and still.
	// The state file is replaced (a new inode) at every check. Its mtime
	// would not do: it comes from the kernel's coarse clock, which may
	// read earlier than a time.Now() taken just before.
	stateFile := filepath.Join(adir, "state.json")
	inode := func() uint64 {
		st, err := os.Stat(stateFile)
		if err != nil {
			return 0
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	onceInode := inode()
	daemon := startWith(t, bin, nil, args...)
	testwait.For(t, 20*time.Second, "the daemon's first check", func() bool {
		ino := inode()
		return ino != 0 && ino != onceInode
	})
	rss, before := procStat(t, daemon.cmd.Process.Pid)
	window := 3 * time.Second
	time.Sleep(window) // a measuring window, not a synchronisation
	_, after := procStat(t, daemon.cmd.Process.Pid)
	t.Logf("idle agent: %d kB resident, %d CPU ticks in %s", rss, after-before, window)
	if rss > 20*1024 {
		t.Errorf("idle agent holds %d kB; want under 20 MB", rss)
	}
	if after-before > 1 {
		t.Errorf("idle agent used %d CPU ticks in %s", after-before, window)
	}
	daemon.stop(t)

	// A failing -exec: logged with its output, -once exits 1, status
	// tells, and the next run tries the command again.
	code, out = runBin(t, bin, nil, append(args, "-once", "-renew", "-exec", "echo cannot reload >&2; exit 1")...)
	if code != agentFailed || !strings.Contains(out, "cannot reload") {
		t.Fatalf("agent -once with a failing -exec: exit %d\n%s", code, out)
	}
	code, out = runBin(t, bin, nil, "agent", "status", "-dir", adir)
	if !strings.Contains(out, "renewed") || !strings.Contains(out, "cannot reload") || !strings.Contains(out, "(1 in a row)") ||
		!strings.Contains(out, "pending") {
		t.Fatalf("status after a failing -exec: %d\n%s", code, out)
	}
	marker := filepath.Join(t.TempDir(), "reloaded")
	if code, out := runBin(t, bin, nil, append(args, "-once", "-exec", "touch "+marker)...); code != 0 {
		t.Fatalf("agent -once with a working -exec: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the pending -exec did not run again: %v", err)
	}
	if code, out := runBin(t, bin, nil, "agent", "status", "-dir", adir); code != 0 || strings.Contains(out, "last error") ||
		strings.Contains(out, "pending") || !strings.Contains(out, "good by OCSP") {
		t.Fatalf("status after the -exec ran: %d\n%s", code, out)
	}

	// Revoked: the next -once run asks OCSP and stops with status 3,
	// though no renewal is due.
	var st agent.State
	data, _ := os.ReadFile(filepath.Join(adir, "state.json"))
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	if code, out := runBin(t, binary, env, "cert", "revoke", st.Serial); code != 0 {
		t.Fatalf("cert revoke: %d %s", code, out)
	}
	code, out = runBin(t, bin, nil, append(args, "-once")...)
	if code != agentStopped || !strings.Contains(out, "revoked") || !strings.Contains(out, "OCSP") {
		t.Fatalf("agent -once after revocation: exit %d\n%s", code, out)
	}
	if code, out := runBin(t, bin, nil, "agent", "status", "-dir", adir); code == 0 || !strings.Contains(out, "stopped") ||
		!strings.Contains(out, "revoked by OCSP") || !strings.Contains(out, "(1 in a row)") {
		t.Fatalf("status after revocation: %d\n%s", code, out)
	}
	ca.stop(t)
}

// The device build cross-compiles to static binaries for ARM boards.
func TestAgentCrossCompiles(t *testing.T) {
	for arch, machine := range map[string]elf.Machine{"arm": elf.EM_ARM, "arm64": elf.EM_AARCH64, "amd64": elf.EM_X86_64} {
		bin := buildAgent(t, arch)
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != machine {
			t.Errorf("%s: machine %s", arch, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: dynamically linked", arch)
			}
		}
		f.Close()
		st, _ := os.Stat(bin)
		t.Logf("%s: %.1f MB", arch, float64(st.Size())/(1<<20))
	}
}

// The systemd units in deploy/ (the server's and the agent's) pass
// systemd-analyze verify.
func TestSystemdUnits(t *testing.T) {
	requireTools(t, "systemd-analyze")
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"quorumca.service", "quorumca-agent.service", "quorumca-agent-once.service", "quorumca-agent-once.timer", "quorumca-crl-fetch.service", "quorumca-crl-fetch.timer"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", name))
		if err != nil {
			t.Fatal(err)
		}
		// verify checks that ExecStart exists: point it at the test's binary.
		b = []byte(strings.ReplaceAll(string(b), "/usr/local/bin/quorumca", binary))
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, path)
	}
	out, err := exec.Command("systemd-analyze", append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The agent binary enrolls a device by its factory certificate
// (-bootstrap-cert, -bootstrap-key) with an x5c provisioner, from a bundle
// without a token; its next run has nothing to do.
func TestAgentProcessByFactoryCertificate(t *testing.T) {
	requireTools(t, "openssl")
	dir := t.TempDir()
	ca, addr, env := startDev(t, dir)
	mfr := t.TempDir()
	script := `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout mfr.key -out mfr.pem -days 30 \
  -subj "/CN=Acme Meters root" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout idevid.key -subj "/CN=meter/serialNumber=M-77" -out idevid.csr
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > ext.cnf
openssl x509 -req -in idevid.csr -CA mfr.pem -CAkey mfr.key -CAcreateserial -days 30 -extfile ext.cnf -out idevid.pem`
	cmd := exec.Command("sh", "-ec", script)
	cmd.Dir = mfr
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("manufacturer: %v\n%s", err, out)
	}
	roots, _ := os.ReadFile(filepath.Join(mfr, "mfr.pem"))
	doc, _ := json.Marshal(map[string]any{"name": "meters", "kind": "x5c", "authority": "default",
		"policy": map[string]any{"dns": []string{".devices.example"}},
		"x5c":    map[string]any{"roots": string(roots), "names": []string{"{serial}.devices.example"}}})
	docFile := filepath.Join(mfr, "meters.json")
	if err := os.WriteFile(docFile, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runBin(t, binary, env, "provisioner", "create", "-f", docFile); code != 0 {
		t.Fatalf("provisioner create: %d %s", code, out)
	}
	caRoot, _ := os.ReadFile(filepath.Join(dir, "root.pem"))
	bundle := filepath.Join(t.TempDir(), "bundle.json")
	b := agent.Bundle{Addrs: []string{addr}, Roots: string(caRoot), Provisioner: "meters"}
	if err := b.Write(bundle); err != nil {
		t.Fatal(err)
	}
	bin := buildAgent(t, runtime.GOARCH)
	adir := filepath.Join(t.TempDir(), "agent")
	args := []string{"agent", "-dir", adir, "-bundle", bundle, "-once",
		"-bootstrap-cert", filepath.Join(mfr, "idevid.pem"), "-bootstrap-key", filepath.Join(mfr, "idevid.key")}
	if code, out := runBin(t, bin, nil, args...); code != 0 {
		t.Fatalf("agent -once: %d %s", code, out)
	}
	out, err := exec.Command("openssl", "x509", "-in", filepath.Join(adir, "cert.pem"), "-noout", "-ext", "subjectAltName").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "DNS:m-77.devices.example") {
		t.Fatalf("enrolled certificate: %v %s", err, out)
	}
	if code, out := runBin(t, bin, nil, args...); code != 0 || strings.Contains(out, "enrolled") {
		t.Fatalf("second run: %d %s", code, out)
	}
	ca.stop(t)
}

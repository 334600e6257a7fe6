//go:build !agent

package main

// The command tree: every command's help, the version, usage errors and
// completion, against the built binary (TestMain builds it).

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// runCLI runs bin and returns its exit status, standard output and error.
func runCLI(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

// Every node of the tree is a real command (none of hashicorp/cli's
// stand-ins for a missing parent) with a synopsis and a help that lists
// each of its flags but the hidden ones.
func TestCommandTreeIsComplete(t *testing.T) {
	cmds := commands()
	for name, factory := range cmds {
		c, err := factory()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.TrimSpace(c.Synopsis()) == "" || strings.TrimSpace(c.Help()) == "" {
			t.Errorf("%q: empty synopsis or help", name)
		}
		if !strings.HasPrefix(c.Help(), "Usage: quorumca "+name) {
			t.Errorf("%q: help starts %q", name, strings.SplitN(c.Help(), "\n", 2)[0])
		}
		if i := strings.LastIndex(name, " "); i > 0 && cmds[name[:i]] == nil {
			t.Errorf("%q: no parent command %q", name, name[:i])
		}
		cmd, ok := c.(*command)
		if !ok {
			continue
		}
		fs, _ := cmd.flags()
		completes := cmd.AutocompleteFlags()
		fs.VisitAll(func(f *flag.Flag) {
			listed := strings.Contains(cmd.Help(), "\n  -"+f.Name+" ") || strings.Contains(cmd.Help(), "\n  -"+f.Name+"\n")
			if listed == hidden(f) {
				t.Errorf("%q: flag -%s listed in help: %v, hidden: %v", name, f.Name, listed, hidden(f))
			}
			if _, ok := completes["-"+f.Name]; ok == hidden(f) {
				t.Errorf("%q: flag -%s completed: %v, hidden: %v", name, f.Name, ok, hidden(f))
			}
		})
	}
	for _, want := range []string{"server", "dev", "keygen", "version", "agent", "agent status", "crl fetch",
		"operator authority create", "operator raft list-peers", "operator snapshot save", "operator recover-admin", "operator compact",
		"admin create", "token create", "cert revoke", "audit verify", "provisioner update", "bench run", "bench compare"} {
		if cmds[want] == nil {
			t.Errorf("no command %q", want)
		}
	}
}

// Every command's -h, and help <command>, prints its usage and synopsis
// to standard output and exits 0.
func TestEveryCommandHasHelp(t *testing.T) {
	for name, factory := range commands() {
		c, _ := factory()
		words := strings.Fields(name)
		for _, args := range [][]string{slices.Concat(words, []string{"-h"}), slices.Concat(words, []string{"--help"}), slices.Concat([]string{"help"}, words)} {
			code, stdout, stderr := runCLI(t, binary, nil, args...)
			if code != 0 || stderr != "" || !strings.Contains(stdout, "Usage: quorumca "+name) || !strings.Contains(stdout, c.Synopsis()) {
				t.Errorf("quorumca %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
			}
		}
	}
	for _, args := range [][]string{nil, {"-h"}, {"-help"}, {"--help"}, {"help"}} {
		code, stdout, _ := runCLI(t, binary, nil, args...)
		if code != 0 || !strings.Contains(stdout, "token ") || !strings.Contains(stdout, "-autocomplete-install") {
			t.Errorf("quorumca %v: exit %d\n%s", args, code, stdout)
		}
	}
}

func TestVersionForms(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}, {"-v"}} {
		if code, stdout, _ := runCLI(t, binary, nil, args...); code != 0 || stdout != "quorumca dev\n" {
			t.Errorf("quorumca %v: exit %d, %q", args, code, stdout)
		}
	}
	if code, stdout, _ := runCLI(t, binary, nil, "version", "-h"); code != 0 || !strings.HasPrefix(stdout, "Usage: quorumca version") || strings.Contains(stdout, "quorumca dev") {
		t.Errorf("version -h: exit %d, %q", code, stdout)
	}
}

// keygen -h prints help, not a key.
func TestKeygenHelpPrintsNoKey(t *testing.T) {
	code, stdout, _ := runCLI(t, binary, nil, "keygen", "-h")
	if code != 0 || !strings.HasPrefix(stdout, "Usage: quorumca keygen") {
		t.Fatalf("keygen -h: exit %d, %q", code, stdout)
	}
	isKey := func(s string) bool {
		for _, l := range strings.Fields(s) {
			if b, err := base64.StdEncoding.DecodeString(l); err == nil && len(b) == 32 {
				return true
			}
		}
		return false
	}
	if isKey(stdout) {
		t.Errorf("keygen -h printed a key: %q", stdout)
	}
	if _, stdout, _ := runCLI(t, binary, nil, "keygen"); !isKey(stdout) {
		t.Errorf("keygen printed no key: %q", stdout)
	}
}

// A command line that cannot run gets one line on standard error and
// exit status 1.
func TestUsageErrorsAreOneLine(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte("qcat_x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-nosuch"}, "flag provided but not defined: -nosuch"},
		{[]string{"-nosuch", "version"}, "flag provided but not defined: -nosuch"},
		{[]string{"keygen", "-nosuch"}, "flag provided but not defined: -nosuch"},
		{[]string{"token", "create", "-nosuch"}, "flag provided but not defined: -nosuch"},
		{[]string{"agent", "status", "-nosuch"}, "flag provided but not defined: -nosuch"},
		{[]string{"operator", "raft", "-nosuch"}, "flag provided but not defined: -nosuch"},
		{[]string{"dev", "-nodes", "x"}, "invalid value"},
		{[]string{"nosuch"}, `unknown command "nosuch"`},
		{[]string{"token", "nosuch"}, `quorumca token: unknown command "nosuch"`},
		{[]string{"operator", "authority", "nosuch"}, `unknown command "nosuch"`},
		{[]string{"agent", "nosuch"}, `unknown command "nosuch"`},
		{[]string{"help", "nosuch"}, `unknown command "nosuch"`},
		{[]string{"cert", "get"}, "want 1 argument(s), got 0"},
		{[]string{"operator", "wait-healthy"}, "-without is required"},
		{[]string{"bench", "compare", "a.json"}, "want 2 argument(s), got 1"},
		{[]string{"keygen", "extra"}, "want 0 argument(s), got 1"},
		// -admin-token is the token; a file goes to -admin-token-file.
		{[]string{"bench", "run", "-addr", "https://127.0.0.1:1", "-ca-file", tokenFile, "-admin-token", tokenFile}, "-admin-token-file"},
	} {
		code, stdout, stderr := runCLI(t, binary, nil, tc.args...)
		if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("quorumca %s: exit %d, want 1 and one line with %q\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, tc.want, stdout, stderr)
		}
	}
	// A group without its subcommand: its help, on standard error.
	if code, stdout, stderr := runCLI(t, binary, nil, "operator", "raft"); code != 1 || stdout != "" || !strings.Contains(stderr, "list-peers") {
		t.Errorf("operator raft: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// agent status prints JSON with -format json, and with -json, its old
// name, which help no longer shows.
func TestAgentStatusFormat(t *testing.T) {
	dir := t.TempDir()
	state := `{"status": "enrolled", "names": ["device1.example"], "not_after": "2999-01-01T00:00:00Z"}`
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	var outs []string
	for _, args := range [][]string{{"-format", "json"}, {"-json"}} {
		code, stdout, stderr := runCLI(t, binary, nil, append([]string{"agent", "status", "-dir", dir}, args...)...)
		var st map[string]any
		if err := json.Unmarshal([]byte(stdout), &st); code != 0 || err != nil || st["status"] != "enrolled" {
			t.Errorf("agent status %v: exit %d, %v\n%s%s", args, code, err, stdout, stderr)
		}
		outs = append(outs, stdout)
	}
	if outs[0] != outs[1] {
		t.Errorf("-format json and -json differ:\n%s\n%s", outs[0], outs[1])
	}
	if code, stdout, _ := runCLI(t, binary, nil, "agent", "status", "-dir", dir); code != 0 || !strings.Contains(stdout, "identity:") {
		t.Errorf("agent status: exit %d\n%s", code, stdout)
	}
	if code, _, stderr := runCLI(t, binary, nil, "agent", "status", "-dir", dir, "-format", "yaml"); code != 1 || !strings.Contains(stderr, "-format must be table or json") {
		t.Errorf("agent status -format yaml: exit %d, %s", code, stderr)
	}
}

// The shell's completion requests (what bash sends once
// -autocomplete-install has registered the binary) get commands, flags
// and flag values.
func TestCompletion(t *testing.T) {
	for line, want := range map[string][]string{
		"quorumca tok":                   {"token"},
		"quorumca operator raft ":        {"list-peers", "remove-peer", "transfer-leadership"},
		"quorumca agent status -":        {"-dir", "-format", "-state"},
		"quorumca agent status -format ": {"json", "table"},
		"quorumca dev -log-level w":      {"warn"},
		"quorumca -autocomplete-i":       {"-autocomplete-install"},
	} {
		code, stdout, stderr := runCLI(t, binary, []string{"COMP_LINE=" + line, "COMP_POINT=" + strconv.Itoa(len(line))}, "quorumca")
		got := strings.Fields(stdout)
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("completing %q: exit %d, got %q, want %q among them (stderr %s)", line, code, got, w, stderr)
			}
		}
		if slices.Contains(got, "-json") {
			t.Errorf("completing %q offers the hidden -json", line)
		}
	}
}

// The device build holds the agent's part of the same tree.
func TestAgentBuildCommandTree(t *testing.T) {
	bin := buildAgent(t, runtime.GOARCH)
	code, stdout, _ := runCLI(t, bin, nil, "-h")
	if code != 0 || !strings.Contains(stdout, "agent ") || !strings.Contains(stdout, "version ") || strings.Contains(stdout, "server ") {
		t.Errorf("agent build -h: exit %d\n%s", code, stdout)
	}
	if code, stdout, _ := runCLI(t, bin, nil, "agent", "status", "-h"); code != 0 || !strings.Contains(stdout, "Usage: quorumca agent status") {
		t.Errorf("agent build: agent status -h: exit %d\n%s", code, stdout)
	}
	if code, _, stderr := runCLI(t, bin, nil, "server"); code != 1 || strings.Count(stderr, "\n") != 1 {
		t.Errorf("agent build: server: exit %d\n%s", code, stderr)
	}
}

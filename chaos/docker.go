package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Every Docker object a run creates carries these labels, so a later run
// can remove what a crashed one left behind: objects whose owner process
// on this host is gone.
const (
	labelRun   = "io.quorumca.chaos"       // the run ID
	labelOwner = "io.quorumca.chaos.owner" // hostname:pid of the test process
)

// docker runs the docker CLI.
type docker struct {
	owner string
}

func newDocker() *docker {
	host, _ := os.Hostname()
	return &docker{owner: fmt.Sprintf("%s:%d", host, os.Getpid())}
}

// run runs `docker args...` and returns its standard output, trimmed.
func (d *docker) run(ctx context.Context, args ...string) (string, error) {
	return d.runIn(ctx, "", args...)
}

func (d *docker) runIn(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// labels are the labels of every object of run.
func (d *docker) labels(run string) []string {
	return []string{"--label", labelRun + "=" + run, "--label", labelOwner + "=" + d.owner}
}

// checkDocker fails with one clear line when Docker cannot be used.
func checkDocker(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("chaos: docker is required and not installed (Debian: apt-get install docker.io)")
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		return fmt.Errorf("chaos: the Docker engine does not answer (is dockerd running, may this user use it?): %s",
			strings.TrimSpace(lastLine(string(out))))
	}
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// stale reports whether owner (hostname:pid) is a process of this host
// that no longer exists.
func stale(owner string) bool {
	host, _ := os.Hostname()
	h, p, ok := strings.Cut(strings.TrimSpace(owner), ":")
	pid, err := strconv.Atoi(p)
	if !ok || h != host || err != nil || pid == os.Getpid() {
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// workDir makes the run's temporary directory (configs, data dirs) with an
// owner file, after removing those of runs whose process is gone.
func (d *docker) workDir() (string, error) {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), "quorumca-chaos-run-*"))
	for _, dir := range old {
		if b, err := os.ReadFile(filepath.Join(dir, "owner")); err == nil && stale(string(b)) {
			os.RemoveAll(dir)
		}
	}
	dir, err := os.MkdirTemp("", "quorumca-chaos-run-")
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "owner"), []byte(d.owner), 0o644)
}

// cleanLeftovers removes containers, networks and images of earlier runs
// on this host whose test process no longer exists.
func (d *docker) cleanLeftovers(ctx context.Context) error {
	kinds := []struct {
		list []string
		rm   []string
	}{
		{[]string{"ps", "-a"}, []string{"rm", "-f", "-v"}},
		{[]string{"network", "ls"}, []string{"network", "rm"}},
		{[]string{"image", "ls"}, []string{"rmi", "-f"}},
	}
	var errs []error
	for _, k := range kinds {
		args := append(k.list, "--filter", "label="+labelOwner, "--format", `{{.ID}} {{.Label "`+labelOwner+`"}}`)
		out, err := d.run(ctx, args...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var ids []string
		for _, line := range strings.Split(out, "\n") {
			id, owner, ok := strings.Cut(strings.TrimSpace(line), " ")
			if ok && stale(owner) {
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			if _, err := d.run(ctx, append(k.rm, ids...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// buildImage builds a FROM scratch image holding the static binary bin,
// in a temporary build context, and returns its tag.
func (d *docker) buildImage(ctx context.Context, run, bin string) (string, error) {
	dir, err := os.MkdirTemp("", "quorumca-chaos-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	b, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "quorumca"), b, 0o755); err != nil {
		return "", err
	}
	dockerfile := `FROM scratch
COPY quorumca /quorumca
ENTRYPOINT ["/quorumca"]
CMD ["server", "-config", "/etc/quorumca/node.hcl"]
`
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return "", err
	}
	tag := "quorumca-chaos:" + run
	args := append([]string{"build", "-q", "-t", tag}, d.labels(run)...)
	if _, err := d.runIn(ctx, dir, append(args, ".")...); err != nil {
		return "", err
	}
	return tag, nil
}

// buildBinary builds ./cmd/quorumca of the module at root as a static
// binary into dir.
func buildBinary(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "quorumca")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/quorumca")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build quorumca: %v\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("chaos: no go.mod above the working directory")
		}
		dir = parent
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/quorumca/quorumca/agent"
	_ "github.com/quorumca/quorumca/signer/pkcs11" // -bootstrap-key pkcs11:...
)

// Exit statuses of the agent.
const (
	agentFailed  = 1 // -once: this attempt failed; a later one may succeed
	agentStopped = 3 // the CA refused for good: the device needs a new enrollment
)

const defaultAgentDir = "/var/lib/quorumca-agent"

type agentFiles struct{ dir, bundle, cert, key, chain, roots, state string }

func (f *agentFiles) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dir, "dir", defaultAgentDir, "directory of the agent's files; the flags below default to names in it")
	fs.StringVar(&f.bundle, "bundle", "", "enrollment bundle (default DIR/bundle.json); its token is removed once used")
	fs.StringVar(&f.cert, "cert", "", "certificate, then its chain (default DIR/cert.pem)")
	fs.StringVar(&f.key, "key", "", "private key, mode 0600 (default DIR/key.pem)")
	fs.StringVar(&f.chain, "chain", "", "issuing chain alone (default DIR/chain.pem; \"-\" for none)")
	fs.StringVar(&f.roots, "roots", "", "trust bundle, kept current from /v1/roots (default DIR/roots.pem)")
	fs.StringVar(&f.state, "state", "", "state file read by 'agent status' (default DIR/state.json)")
}

func (f *agentFiles) resolve() {
	def := func(p *string, name string) {
		if *p == "" {
			*p = filepath.Join(f.dir, name)
		}
	}
	def(&f.bundle, "bundle.json")
	def(&f.cert, "cert.pem")
	def(&f.key, "key.pem")
	def(&f.chain, "chain.pem")
	def(&f.roots, "roots.pem")
	def(&f.state, "state.json")
	if f.chain == "-" {
		f.chain = ""
	}
}

func init() {
	register(&command{name: "agent", synopsis: "Device agent: enroll once, then keep the certificate renewed", setup: runAgent,
		about: "Exit status with -once: 1 if this attempt failed (a later one may succeed; a failed\n-exec or -pid-file counts, and is tried again at the next run), 3 if the\ncertificate is revoked (OCSP) or the CA refused for good (the device needs a\nnew enrollment)."},
		&command{name: "agent status", synopsis: "Show the agent's certificate and its renewal state", setup: agentStatus,
			about: "Exit status 0: a valid certificate is in place, not revoked as far as OCSP last said,\nand the agent is not stopped."})
}

func runAgent(fs *flag.FlagSet) func([]string) int {
	var files agentFiles
	files.register(fs)
	var cfg agent.Config
	var sig string
	once := fs.Bool("once", false, "do what is due (enroll, renew, refresh roots) and exit: for cron and systemd timers")
	fs.BoolVar(&cfg.RotateKey, "rotate-key", false, "use a new key for every renewal")
	fs.StringVar(&cfg.BootstrapCert, "bootstrap-cert", "", "factory certificate (PEM, then its chain): without a token, enroll with the bundle's x5c provisioner")
	fs.StringVar(&cfg.BootstrapKey, "bootstrap-key", "", "the factory certificate's key: a PEM file, or a pkcs11: URI of a key in a secure element (PKCS#11 build)")
	fs.BoolVar(&cfg.RenewNow, "renew", false, "renew at once, due or not (with -once: check a certificate's standing)")
	fs.StringVar(&cfg.Exec, "exec", "", "command run with /bin/sh -c after each new certificate (e.g. 'systemctl reload nginx')")
	fs.StringVar(&cfg.PIDFile, "pid-file", "", "signal the process in this PID file after each new certificate")
	fs.StringVar(&sig, "signal", "HUP", "signal for -pid-file")
	fs.DurationVar(&cfg.CheckInterval, "check-interval", time.Hour, "how often to refresh the trust bundle and ask OCSP whether the certificate is revoked")
	fs.DurationVar(&cfg.BackoffMin, "backoff-min", time.Second, "first retry delay after a failure")
	fs.DurationVar(&cfg.BackoffMax, "backoff-max", 5*time.Minute, "longest retry delay")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "timeout of one request")
	var lf logFlags
	lf.register(fs, "info")
	return func([]string) int {
		files.resolve()
		log, err := lf.logger()
		if err != nil {
			return fail("agent: %v", err)
		}
		if cfg.Signal, err = parseSignal(sig); err != nil {
			return fail("agent: %v", err)
		}
		cfg.BundleFile, cfg.CertFile, cfg.KeyFile, cfg.ChainFile, cfg.RootsFile, cfg.StateFile =
			files.bundle, files.cert, files.key, files.chain, files.roots, files.state
		cfg.Logger = log
		for _, p := range []string{cfg.CertFile, cfg.KeyFile, cfg.StateFile} {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return fail("agent: %v", err)
			}
		}
		release, err := agent.Lock(cfg.StateFile + ".lock")
		if err != nil {
			return fail("agent: %v", err)
		}
		defer release()
		a, err := agent.New(cfg)
		if err != nil {
			return fail("agent: %v", err)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if *once {
			_, err = a.Check(ctx)
		} else {
			err = a.Run(ctx)
		}
		switch {
		case errors.Is(err, agent.ErrStopped):
			fmt.Fprintf(os.Stderr, "quorumca: agent: %v\n", err)
			return agentStopped
		case err != nil:
			fmt.Fprintf(os.Stderr, "quorumca: agent: %v\n", err)
			return agentFailed
		}
		return 0
	}
}

func parseSignal(s string) (syscall.Signal, error) {
	switch strings.TrimPrefix(strings.ToUpper(s), "SIG") {
	case "HUP":
		return syscall.SIGHUP, nil
	case "USR1":
		return syscall.SIGUSR1, nil
	case "USR2":
		return syscall.SIGUSR2, nil
	case "TERM":
		return syscall.SIGTERM, nil
	case "INT":
		return syscall.SIGINT, nil
	}
	return 0, fmt.Errorf("-signal %q: want HUP, USR1, USR2, TERM or INT", s)
}

// agentStatus prints the agent's state. Exit status 0: a valid certificate
// is in place and the agent is not stopped.
func agentStatus(fs *flag.FlagSet) func([]string) int {
	var files agentFiles
	files.register(fs)
	format := fs.String("format", "table", "output: table or json")
	asJSON := fs.Bool("json", false, "") // -format json's old name: works, hidden from help
	return func([]string) int {
		if *asJSON {
			*format = "json"
		}
		if *format != "table" && *format != "json" {
			return fail("agent status: -format must be table or json")
		}
		files.resolve()
		st, err := agent.ReadState(files.state)
		if err != nil {
			return fail("agent status: %v", err)
		}
		if *format == "json" {
			b, _ := json.MarshalIndent(st, "", "  ")
			fmt.Println(string(b))
		} else {
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			at := func(t time.Time) string {
				if t.IsZero() {
					return "-"
				}
				return fmt.Sprintf("%s (%s)", t.Format(time.RFC3339), relative(time.Until(t)))
			}
			fmt.Fprintf(tw, "status:\t%s\n", st.Status)
			if st.Reason != "" {
				fmt.Fprintf(tw, "stopped because:\t%s\n", st.Reason)
			}
			fmt.Fprintf(tw, "identity:\t%s\n", strings.Join(st.Names, ", "))
			fmt.Fprintf(tw, "serial:\t%s\n", st.Serial)
			fmt.Fprintf(tw, "expires:\t%s\n", at(st.NotAfter))
			fmt.Fprintf(tw, "renew at:\t%s\n", at(st.RenewAt))
			fmt.Fprintf(tw, "last attempt:\t%s %s\n", at(st.LastAttempt), st.LastResult)
			if st.Revocation != "" {
				fmt.Fprintf(tw, "revocation:\t%s by OCSP at %s\n", st.Revocation, at(st.RevocationChecked))
			}
			if st.LastError != "" {
				fmt.Fprintf(tw, "last error:\t%s %s (%d in a row)\n", at(st.LastErrorAt), st.LastError, st.Failures)
			}
			if st.HookPending {
				fmt.Fprintf(tw, "pending:\t-exec / -pid-file not yet done for this certificate\n")
			}
			fmt.Fprintf(tw, "next attempt:\t%s\n", at(st.NextAttempt))
			fmt.Fprintf(tw, "renewals:\t%d\n", st.Renewals)
			tw.Flush()
		}
		if st.Status == agent.StatusStopped || st.Revocation == agent.RevocationRevoked || st.NotAfter.IsZero() || time.Now().After(st.NotAfter) {
			return 1
		}
		return 0
	}
}

func relative(d time.Duration) string {
	if d < 0 {
		return (-d).Round(time.Second).String() + " ago"
	}
	return "in " + d.Round(time.Second).String()
}

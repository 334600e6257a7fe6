// Command quorumca is the CA node, its dev mode, its operator tools and
// the device agent: one binary with subcommands, HashiCorp style. Built
// with -tags agent it holds only the agent, for devices.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name, synopsis string
	run            func(args []string) int
}

// order is how usage lists the commands; each file registers its own, and
// a device build (-tags agent) has only the agent's.
var order = []string{"server", "dev", "operator", "provisioner", "token", "cert", "admin", "audit", "crl", "agent", "bench", "keygen", "version"}

var registry = map[string]command{}

func register(cs ...command) {
	for _, c := range cs {
		registry[c.name] = c
	}
}

func init() {
	register(command{"version", "Print the version", func([]string) int { fmt.Println("quorumca", version); return 0 }})
}

func commands() []command {
	var out []command
	for _, name := range order {
		if c, ok := registry[name]; ok {
			out = append(out, c)
		}
	}
	return out
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:])
		}
	}
	fmt.Fprintf(os.Stderr, "quorumca: unknown command %q\n\n", args[0])
	usage(os.Stderr)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: quorumca <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.synopsis)
	}
	fmt.Fprintln(w, "\nRun 'quorumca <command> -h' for a command's flags.")
}

// logFlags adds -log-level and -log-format to fs.
type logFlags struct{ level, format string }

func (l *logFlags) register(fs *flag.FlagSet, level string) {
	fs.StringVar(&l.level, "log-level", level, "log level: debug, info, warn, error")
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
}

func (l *logFlags) logger() (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch strings.ToLower(l.format) {
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return nil, fmt.Errorf("-log-format must be text or json")
	}
	// A library that writes through the standard log package lands in the
	// same log, in the same format.
	slog.SetDefault(slog.New(h))
	return slog.Default(), nil
}

// waitForSignal blocks until SIGINT or SIGTERM.
func waitForSignal() os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(ch)
	return <-ch
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "quorumca: "+format+"\n", args...)
	return 1
}

// Command quorumca is the CA node, its dev mode, its operator tools and
// the device agent: one binary, one command tree on hashicorp/cli (as
// Consul and Nomad use it).
//
// Each file registers its commands in init (commands.go): a name of one
// or more words ("operator authority create"), a synopsis, and a setup
// that adds the command's flags to a flag set and returns what runs once
// they are parsed. A command without setup only groups its subcommands.
// Help lists the flags of that same flag set, and shell completion
// (complete.go, quorumca -autocomplete-install) offers them, so neither
// drifts from what the command parses. Flags and positional arguments
// mix in any order. A command line that cannot run gets one line and exit
// status 1. Built with -tags agent the tree holds only the agent, for
// devices.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hashicorp/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	register(&command{name: "version", synopsis: "Print the version",
		setup: func(*flag.FlagSet) func([]string) int {
			return func([]string) int { fmt.Println("quorumca", version); return 0 }
		}})
}

func main() { os.Exit(run(os.Args[1:])) }

// run is the whole command line.
func run(args []string) int {
	completing := os.Getenv("COMP_LINE") != "" // the shell asks for completions: hashicorp/cli answers
	if len(args) == 0 && !completing {
		args = []string{"-h"}
	}
	c := &cli.CLI{
		Name:         "quorumca",
		Args:         args,
		Version:      "quorumca " + version,
		Commands:     commands(),
		HelpFunc:     helpFunc,
		HelpWriter:   os.Stdout,
		ErrorWriter:  os.Stderr,
		Autocomplete: true,
	}
	if !completing {
		if code, done := check(c, args); done {
			return code
		}
	}
	code, err := c.Run()
	if err != nil {
		return fail("%v", err)
	}
	if code == 127 { // hashicorp/cli's "no such command", past check
		code = 1
	}
	return code
}

// commands is the command tree, for hashicorp/cli.
func commands() map[string]cli.CommandFactory {
	m := map[string]cli.CommandFactory{"help": func() (cli.Command, error) { return helpCommand{}, nil }}
	for name, c := range registry {
		m[name] = func() (cli.Command, error) { return c, nil }
	}
	return m
}

// globalFlags go before the command.
var globalFlags = map[string]bool{"h": true, "help": true, "v": true, "version": true,
	"autocomplete-install": true, "autocomplete-uninstall": true}

// check answers in one line what hashicorp/cli would answer with the whole
// help: a flag before the command that is not a global one, or a command
// that does not exist.
func check(c *cli.CLI, args []string) (int, bool) {
	for _, a := range args {
		if a == "--" || !strings.HasPrefix(a, "-") {
			break
		}
		if !globalFlags[strings.TrimLeft(a, "-")] {
			return usageError("", "flag provided but not defined: "+a), true
		}
	}
	if sub := c.Subcommand(); sub != "" && c.Commands[sub] == nil {
		return usageError("", fmt.Sprintf("unknown command %q", sub)), true
	}
	return 0, false
}

func helpFunc(cmds map[string]cli.CommandFactory) string {
	return cli.BasicHelpFunc("quorumca")(cmds) + `
Run 'quorumca help <command>' or 'quorumca <command> -h' for a command's
flags and subcommands. 'quorumca -autocomplete-install' adds completion of
commands and flags to bash and zsh.`
}

// helpCommand is "quorumca help <command ...>", the same as the command's -h.
type helpCommand struct{}

func (helpCommand) Synopsis() string { return "Show a command's help" }
func (helpCommand) Help() string {
	return "Usage: quorumca help [command ...]\n\n  Show a command's help: quorumca help operator authority create\n  is quorumca operator authority create -h."
}
func (helpCommand) Run(args []string) int { return run(append(args, "-h")) }

// logFlags adds -log-level and -log-format to fs.
type logFlags struct {
	level, format string
	lv            slog.LevelVar // the logger's level, changed at reloads
}

func (l *logFlags) register(fs *flag.FlagSet, level string) {
	fs.StringVar(&l.level, "log-level", level, "log level: debug, info, warn, error")
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
}

func (l *logFlags) logger() (*slog.Logger, error) {
	if err := l.lv.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: &l.lv}
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

// signals delivers SIGINT, SIGTERM and SIGHUP from the moment it is
// called: a SIGHUP (a log rotation, a certificate renewal) must never
// stop a node, not even one still starting.
func signals() <-chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	return ch
}

// waitForStop blocks until SIGINT or SIGTERM, calling reload at each
// SIGHUP.
func waitForStop(ch <-chan os.Signal, reload func()) os.Signal {
	for sig := range ch {
		if sig != syscall.SIGHUP {
			return sig
		}
		reload()
	}
	return nil
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "quorumca: "+format+"\n", args...)
	return 1
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/cli"
	"github.com/posener/complete"
)

// command is one node of the command tree, "token" or "token create".
// Each file registers its own in init; a device build (-tags agent) has
// only the agent's.
type command struct {
	name     string // the words that call it: "operator authority create"
	args     string // positional arguments for the usage line, one word each, all required
	synopsis string
	about    string // more help, when the synopsis is not enough
	// setup adds the command's flags to fs and returns what runs once they
	// are parsed, given the positional arguments. Nil: the command only
	// groups subcommands.
	setup   func(fs *flag.FlagSet) func(args []string) int
	predict complete.Predictor // completes the positional arguments
}

var registry = map[string]*command{}

func register(cs ...*command) {
	for _, c := range cs {
		if registry[c.name] != nil {
			panic("quorumca: command registered twice: " + c.name)
		}
		registry[c.name] = c
	}
}

func (c *command) Synopsis() string { return c.synopsis }

// flags is the command's flag set and what runs once it is parsed. Help
// and completion read the same set, so they never drift from what Run
// parses.
func (c *command) flags() (*flag.FlagSet, func([]string) int) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // Run reports errors in one line
	if c.setup == nil {
		return fs, nil
	}
	return fs, c.setup(fs)
}

// hidden says whether a flag stays out of help and completion: deprecated
// aliases have no usage text.
func hidden(f *flag.Flag) bool { return f.Usage == "" }

func (c *command) Help() string {
	fs, _ := c.flags()
	shown := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.VisitAll(func(f *flag.Flag) {
		if !hidden(f) {
			shown.Var(f.Value, f.Name, f.Usage)
		}
	})
	var flags strings.Builder
	shown.SetOutput(&flags)
	shown.PrintDefaults()

	usage := c.name
	if c.setup == nil {
		usage += " <command>"
	}
	if flags.Len() > 0 {
		usage += " [flags]"
	}
	if c.args != "" {
		usage += " " + c.args
	}
	help := fmt.Sprintf("Usage: quorumca %s\n\n  %s\n", usage, c.synopsis)
	if c.about != "" {
		help += "\n  " + strings.ReplaceAll(c.about, "\n", "\n  ") + "\n"
	}
	if flags.Len() > 0 {
		help += "\nFlags:\n" + flags.String()
	}
	return strings.TrimRight(help, "\n")
}

func (c *command) Run(args []string) int {
	if c.setup == nil {
		if len(args) == 0 {
			return cli.RunResultHelp
		}
		return c.unknown(args[0])
	}
	fs, run := c.flags()
	pos, err := parseArgs(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp): // -h past hashicorp/cli's look, as --h
		fmt.Println(c.Help())
		return 0
	case err != nil:
		return usageError(c.name, err.Error())
	}
	if want := len(strings.Fields(c.args)); len(pos) != want {
		if want == 0 && hasSubcommands(c.name) {
			return c.unknown(pos[0])
		}
		return usageError(c.name, fmt.Sprintf("want %d argument(s), got %d", want, len(pos)))
	}
	return run(pos)
}

func (c *command) unknown(arg string) int {
	if strings.HasPrefix(arg, "-") {
		return usageError(c.name, "flag provided but not defined: "+arg)
	}
	return usageError(c.name, fmt.Sprintf("unknown command %q", arg))
}

func hasSubcommands(name string) bool {
	for k := range registry {
		if strings.HasPrefix(k, name+" ") {
			return true
		}
	}
	return false
}

// usageError is the one line a command line that cannot run gets.
func usageError(name, msg string) int {
	if name != "" {
		name = " " + name
	}
	fmt.Fprintf(os.Stderr, "quorumca%s: %s (see 'quorumca%s -h')\n", name, msg, name)
	return 1
}

// parseArgs takes flags and positional arguments in any order.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if args = fs.Args(); len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

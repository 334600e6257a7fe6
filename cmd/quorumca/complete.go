package main

import (
	"flag"
	"strings"

	"github.com/posener/complete"
)

// Shell completion: hashicorp/cli answers bash and zsh from the command
// tree (quorumca -autocomplete-install), asking each command for these.

func (c *command) AutocompleteArgs() complete.Predictor {
	if c.predict == nil {
		return complete.PredictNothing
	}
	return c.predict
}

func (c *command) AutocompleteFlags() complete.Flags {
	flags := complete.Flags{}
	fs, _ := c.flags()
	fs.VisitAll(func(f *flag.Flag) {
		if !hidden(f) {
			flags["-"+f.Name] = predictFlag(f)
		}
	})
	return flags
}

// flagValues are the values of the flags that take one of a few.
var flagValues = map[string]complete.Predictor{
	"format":        complete.PredictSet("table", "json"),
	"log-format":    complete.PredictSet("text", "json"),
	"log-level":     complete.PredictSet("debug", "info", "warn", "error"),
	"key-type":      complete.PredictSet("ec256", "rsa2048"),
	"key-algorithm": complete.PredictSet("EC_P256", "EC_P384", "RSA_2048", "RSA_3072", "RSA_4096"),
	"role":          complete.PredictSet("admin", "operator", "auditor"),
	"status":        complete.PredictSet("valid", "revoked", "expired"),
	"signal":        complete.PredictSet("HUP", "USR1", "USR2", "TERM", "INT"),
}

// fileFlags name files, whatever the command (-key is left out: it is a
// key URI to the operator commands).
var fileFlags = map[string]bool{
	"config": true, "out": true, "f": true, "csr": true, "root": true, "cert": true, "json": true,
	"plot": true, "ceiling": true, "bundle": true, "chain": true, "roots": true, "state": true,
	"request": true, "request-out": true, "import": true, "heap-profile": true, "pid-file": true,
	"bundle-roots": true,
}

// predictFlag completes a flag's value from its name and kind.
func predictFlag(f *flag.Flag) complete.Predictor {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return complete.PredictNothing
	}
	switch {
	case flagValues[f.Name] != nil:
		return flagValues[f.Name]
	case f.Name == "dir" || strings.HasSuffix(f.Name, "-dir"):
		return complete.PredictDirs("*")
	case fileFlags[f.Name] || strings.HasSuffix(f.Name, "-file"):
		return complete.PredictFiles("*")
	}
	return complete.PredictAnything
}

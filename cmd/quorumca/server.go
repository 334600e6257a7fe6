//go:build !agent

package main

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/quorumca/quorumca/node"
)

func init() {
	register(&command{name: "server", synopsis: "Run a CA node from an HCL config file", setup: server,
		about: "deploy/node.hcl is a commented example of the config file."},
		&command{name: "keygen", synopsis: "Print a new gossip encryption key (base64, 32 bytes)", setup: keygen})
}

func keygen(*flag.FlagSet) func([]string) int {
	return func([]string) int {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return fail("keygen: %v", err)
		}
		fmt.Println(base64.StdEncoding.EncodeToString(k))
		return 0
	}
}

// serverGC trades memory for CPU in a node unless GOGC says otherwise. A
// node's live heap is small (records live in bolt's mmap, not the heap)
// while issuance allocates fast, so the default (100) collects often: at
// 400 a node issued about 10% more certificates per second in a bench run.
func serverGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

func server(fs *flag.FlagSet) func([]string) int {
	configPath := fs.String("config", "", "path to the node's HCL config file (required)")
	var lf logFlags
	lf.register(fs, "info")
	return func([]string) int {
		sigs := signals()
		serverGC()
		if *configPath == "" {
			return fail("server: -config is required (see deploy/node.hcl for a commented example)")
		}
		log, err := lf.logger()
		if err != nil {
			return fail("server: %v", err)
		}
		cfg, err := node.Load(*configPath)
		if err != nil {
			return fail("server: %v", err)
		}
		// -log-level, when given, wins over the file's log_level.
		flagLevel := false
		fs.Visit(func(f *flag.Flag) { flagLevel = flagLevel || f.Name == "log-level" })
		setLevel := func(c *node.Config) {
			if !flagLevel {
				lf.lv.UnmarshalText([]byte(cmp.Or(c.LogLevel, lf.level))) // checked by Load
			}
		}
		setLevel(cfg)
		cfg.Logger = log
		n, err := node.Start(*cfg)
		if err != nil {
			return fail("server: %v", err)
		}
		sig := waitForStop(sigs, func() {
			next, err := node.Load(*configPath)
			if err != nil {
				log.Error("config file not reloaded; the running settings stay", "file", *configPath, "err", err)
				next = nil
			} else {
				setLevel(next)
			}
			n.Reload(next) // nil: the certificate and audit files in use
		})
		log.Info("shutting down", "signal", sig.String())
		if err := n.Close(); err != nil {
			return fail("server: shutdown: %v", err)
		}
		return 0
	}
}

package main

import (
	"flag"

	"github.com/quorumca/quorumca/node"
)

func runServer(args []string) int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	configPath := fs.String("config", "", "path to the node's HCL config file (required)")
	var lf logFlags
	lf.register(fs, "info")
	if err := fs.Parse(args); err != nil {
		return 2
	}
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
	cfg.Logger = log
	n, err := node.Start(*cfg)
	if err != nil {
		return fail("server: %v", err)
	}
	sig := waitForSignal()
	log.Info("shutting down", "signal", sig.String())
	if err := n.Close(); err != nil {
		return fail("server: shutdown: %v", err)
	}
	return 0
}

//go:build !agent

package main

import (
	"flag"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/posener/complete"
	"github.com/quorumca/quorumca/bench"
)

func init() {
	register(&command{name: "bench", synopsis: "Load-test a CA: ceiling, run, storm, compare, fsm, peers"},
		&command{name: "bench ceiling", synopsis: "The in-process rate of what issuing cannot avoid (the reference)", setup: benchCeiling},
		&command{name: "bench run", synopsis: "Enroll (and with -renew, renew) a simulated fleet against a CA", setup: benchFleet},
		&command{name: "bench storm", synopsis: "Every device renews within a window, as after an outage", setup: benchStorm},
		&command{name: "bench acme", synopsis: "ACME orders per second: accounts first, then whole orders with http-01", setup: benchACME,
			about: "Each worker has an ACME account and orders a certificate for the -http01 address over and\n" +
				"over: new order, authorization, challenge (answered by this harness at -http01, which must be\n" +
				"the CA's acme http01_port, e.g. quorumca dev -acme-http01-port), finalize, download."},
		&command{name: "bench compare", args: "A.json B.json", synopsis: "Compare two JSON results", setup: benchCompare,
			predict: complete.PredictFiles("*.json")},
		&command{name: "bench fsm", synopsis: "Load N records into a state machine: memory, snapshot, restore, election, CRL", setup: benchFSM},
		&command{name: "bench peers", synopsis: "quorumca, step-ca and CFSSL side by side under the same fleet", setup: benchPeers,
			about: "Starts each CA on 127.0.0.1 in turn (quorumca as 'dev', one node), configured in -dir,\n" +
				"and enrolls the same fleet against it: rate, latency and the CPU of the CA's process per\n" +
				"certificate. bench/peers.sh installs step-ca and CFSSL at pinned versions and runs this."})
}

func benchCompare(*flag.FlagSet) func([]string) int {
	return func(files []string) int {
		a, err := bench.ReadResult(files[0])
		if err != nil {
			return fail("bench compare: %v", err)
		}
		b, err := bench.ReadResult(files[1])
		if err != nil {
			return fail("bench compare: %v", err)
		}
		bench.Compare(os.Stdout, a, b)
		return 0
	}
}

func benchCeiling(fs *flag.FlagSet) func([]string) int {
	d := fs.Duration("duration", 5*time.Second, "how long to measure")
	keyType := fs.String("key-type", "ec256", "ec256 or rsa2048")
	out := fs.String("json", "", "write the result here")
	return func([]string) int {
		r, err := bench.Ceiling(contextBackground(), *d, *keyType)
		if err != nil {
			return fail("bench ceiling: %v", err)
		}
		r.Summary(os.Stdout)
		return writeResult(r, *out, "")
	}
}

func benchFSM(fs *flag.FlagSet) func([]string) int {
	var cfg bench.FSMConfig
	fs.IntVar(&cfg.Records, "records", 1_000_000, "issued-certificate records to load")
	fs.IntVar(&cfg.Batch, "batch", 256, "log entries per FSM batch (one bolt transaction and fsync)")
	fs.IntVar(&cfg.Revoked, "revoked", 100_000, "records revoked before the CRL is built")
	fs.IntVar(&cfg.CRLShards, "crl-shards", 0, "partition the CRL into this many shards, and build each")
	fs.BoolVar(&cfg.NoCluster, "no-cluster", false, "do not start 3 nodes on the state (they need 6x its size on disk): stream snapshot and restore instead")
	fs.StringVar(&cfg.Dir, "dir", "", "work directory, emptied first and removed after (default: a temporary one)")
	keep := fs.Bool("keep", false, "keep the work directory")
	fs.StringVar(&cfg.HeapProfile, "heap-profile", "", "write a heap profile here when the load ends")
	out := fs.String("json", "", "write the result here")
	quiet := fs.Bool("quiet", false, "no progress lines")
	churn := fs.Bool("churn", false, "instead: a fleet renewing for -days on an accelerated clock, with retention; the file and memory each day")
	var cc bench.ChurnConfig
	fs.IntVar(&cc.Devices, "devices", 1_000_000, "with -churn: the fleet")
	fs.DurationVar(&cc.Lifetime, "lifetime", 24*time.Hour, "with -churn: each certificate's life (renewed at two thirds of it)")
	fs.DurationVar(&cc.Retention, "retention", 48*time.Hour, "with -churn: how long records are kept after expiry")
	fs.DurationVar(&cc.AuditRetention, "audit-retention", 0, "with -churn: how long audit entries are kept (default: -retention)")
	fs.IntVar(&cc.Days, "days", 7, "with -churn: simulated days")
	return func([]string) int {
		if cfg.Dir == "" {
			d, err := os.MkdirTemp("", "quorumca-bench-fsm-")
			if err != nil {
				return fail("bench fsm: %v", err)
			}
			cfg.Dir = d
		}
		if !*keep {
			defer os.RemoveAll(cfg.Dir)
		}
		if !*quiet {
			cfg.Progress = os.Stderr
		}
		if *churn {
			cc.Dir, cc.Batch, cc.Progress = cfg.Dir, cfg.Batch, cfg.Progress
			r, err := bench.Churn(contextBackground(), cc)
			if err != nil {
				return fail("bench fsm -churn: %v", err)
			}
			r.Summary(os.Stdout)
			if *out != "" {
				if err := r.WriteJSON(*out); err != nil {
					return fail("bench fsm -churn: %v", err)
				}
			}
			return 0
		}
		r, err := bench.FSM(contextBackground(), cfg)
		if err != nil {
			return fail("bench fsm: %v", err)
		}
		r.Summary(os.Stdout)
		if *out != "" {
			if err := r.WriteJSON(*out); err != nil {
				return fail("bench fsm: %v", err)
			}
		}
		return 0
	}
}

func benchPeers(fs *flag.FlagSet) func([]string) int {
	var cfg bench.PeersConfig
	fs.StringVar(&cfg.StepCA, "step-ca", "", "the step-ca binary (default: skip step-ca)")
	fs.StringVar(&cfg.CFSSL, "cfssl", "", "the cfssl binary (default: skip CFSSL)")
	fs.StringVar(&cfg.Dir, "dir", "", "work directory: each CA's PKI, configuration, data and log (default: a temporary one, removed after)")
	fs.IntVar(&cfg.Port, "port", 19743, "quorumca's API port (dev also takes +1000 and +2000); step-ca takes port+1, CFSSL port+2")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of each CA's measured phase")
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "closed loop: workers, one kept-alive connection each")
	fs.IntVar(&cfg.Devices, "devices", 100000, "each CA's fleet: each device enrolls once (the phase ends early when they run out)")
	out := fs.String("json", "", "write the results here (and each CA's beside it, as NAME-CA.json)")
	ceilingFile := fs.String("ceiling", "", "a 'bench ceiling' JSON from this session: report the runs against it")
	withSelf := fs.Bool("quorumca", true, "run quorumca too (the ratios are to it)")
	quiet := fs.Bool("quiet", false, "no progress lines")
	return func([]string) int {
		if *withSelf {
			self, err := os.Executable()
			if err != nil {
				return fail("bench peers: %v", err)
			}
			cfg.Quorumca = self
			if version != "dev" {
				cfg.Version = version
			}
		}
		if cfg.Dir == "" {
			d, err := os.MkdirTemp("", "quorumca-bench-peers-")
			if err != nil {
				return fail("bench peers: %v", err)
			}
			defer os.RemoveAll(d)
			cfg.Dir = d
		}
		if !*quiet {
			cfg.Progress = os.Stderr
		}
		if *ceilingFile != "" {
			c, err := bench.ReadResult(*ceilingFile)
			if err != nil {
				return fail("bench peers: %v", err)
			}
			cfg.Ceiling = c.CertsPerSecond
		}
		r := bench.Peers(contextBackground(), cfg)
		for _, x := range r.Results {
			x.Summary(os.Stdout)
		}
		r.Table(os.Stdout)
		if *out != "" {
			if err := r.WriteJSON(*out); err != nil {
				return fail("bench peers: %v", err)
			}
			base := strings.TrimSuffix(*out, ".json")
			for _, x := range r.Results {
				if err := x.WriteJSON(base + "-" + strings.Fields(x.CA)[0] + ".json"); err != nil {
					return fail("bench peers: %v", err)
				}
			}
		}
		if len(r.Errors) > 0 {
			return 1
		}
		return 0
	}
}

func benchFleet(fs *flag.FlagSet) func([]string) int { return benchRun(fs, false) }
func benchStorm(fs *flag.FlagSet) func([]string) int { return benchRun(fs, true) }

func benchRun(fs *flag.FlagSet, storm bool) func([]string) int {
	name := fs.Name()
	var cfg bench.Config
	var af apiFlags
	var out, plot, ceilingFile string
	var window time.Duration
	fs.StringVar(&cfg.Addr, "addr", os.Getenv("QUORUMCA_ADDR"), "CA address, https://host:port: a node or a load balancer (QUORUMCA_ADDR)")
	fs.StringVar(&cfg.CAFile, "ca-file", os.Getenv("QUORUMCA_CA_FILE"), "roots that verify the CA (QUORUMCA_CA_FILE)")
	af.registerToken(fs) // an admin's, to mint the fleet's tokens
	fs.StringVar(&cfg.Provisioner, "provisioner", "", "enrollment-token provisioner (default: the default one)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of the measured phase (it ends early when every device has had its turn)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 32, "closed loop: workers; open loop: most requests in flight")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: arrivals per second (0: closed loop)")
	fs.IntVar(&cfg.Devices, "devices", 10000, "fleet size: each device enrolls once")
	fs.BoolVar(&cfg.Renew, "renew", false, "enroll every device, then measure renewals")
	fs.BoolVar(&cfg.OCSP, "ocsp", false, "enroll every device, then measure OCSP requests (POST /v1/ocsp, kept-alive connections; against a loopback address from 250 loopback source addresses, each under its own budget)")
	fs.StringVar(&cfg.Protocol, "protocol", "json", "how devices enroll: json (POST /v1/sign), est (/.well-known/est/simpleenroll) or scep (/scep/{provisioner}, with -key-type rsa2048)")
	fs.BoolVar(&cfg.KeepAlive, "keepalive", false, "renew over kept-alive connections, with bearer tokens (default: a new mTLS connection per renewal)")
	fs.StringVar(&cfg.KeyType, "key-type", "ec256", "device keys: ec256 or rsa2048")
	fs.IntVar(&cfg.KeyPool, "key-pool", 256, "distinct device keys, made up front and shared round-robin")
	fs.StringVar(&out, "json", "", "write the result here")
	fs.StringVar(&plot, "plot", "", "write an SVG of rate and latency over time here")
	fs.StringVar(&ceilingFile, "ceiling", "", "a 'bench ceiling' JSON from this session: report the run against it")
	fs.IntVar(&cfg.CAPid, "ca-pid", 0, "the CA's process on this machine: report its CPU per certificate over the measured phase")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if storm {
		fs.DurationVar(&window, "window", time.Minute, "every device renews at a random moment of this window")
		cfg.Devices = 100000
		fs.Lookup("devices").DefValue = "100000"
		fs.Lookup("devices").Value.Set("100000")
	}
	return func([]string) int {
		tok, err := af.adminToken()
		if err != nil {
			return fail("%s: %v", name, err)
		}
		if cfg.Addr == "" || cfg.CAFile == "" || tok == "" {
			return fail("%s: -addr, -ca-file and -admin-token or -admin-token-file are required", name)
		}
		cfg.AdminToken = tok
		if !*quiet {
			cfg.Progress = os.Stderr
		}
		if ceilingFile != "" {
			c, err := bench.ReadResult(ceilingFile)
			if err != nil {
				return fail("%s: %v", name, err)
			}
			cfg.Ceiling = c.CertsPerSecond
		}
		ctx := contextBackground()
		var r *bench.Result
		if storm {
			r, err = bench.Storm(ctx, bench.StormConfig{Config: cfg, Window: window})
		} else {
			r, err = bench.Run(ctx, cfg)
		}
		if r != nil {
			for _, p := range r.Phases {
				p.Summary(os.Stdout)
			}
			r.Summary(os.Stdout)
		}
		if err != nil {
			return fail("%s: %v", name, err)
		}
		if code := writeResult(r, out, plot); code != 0 {
			return code
		}
		if r.KeptUp != nil && !*r.KeptUp {
			return 1
		}
		return 0
	}
}

func benchACME(fs *flag.FlagSet) func([]string) int {
	var cfg bench.ACMEConfig
	var af apiFlags
	var out, plot, ceilingFile string
	fs.StringVar(&cfg.Addr, "addr", os.Getenv("QUORUMCA_ADDR"), "CA address, https://host:port: a node or a load balancer; several, comma-separated, share the accounts (QUORUMCA_ADDR)")
	fs.StringVar(&cfg.CAFile, "ca-file", os.Getenv("QUORUMCA_CA_FILE"), "roots that verify the CA (QUORUMCA_CA_FILE)")
	af.registerToken(fs) // an admin's, to make the provisioner if missing
	fs.StringVar(&cfg.Provisioner, "provisioner", "bench-acme", "acme provisioner (made if missing, for 127.0.0.0/8)")
	fs.StringVar(&cfg.HTTP01, "http01", "127.0.0.1:5002", "where this harness answers http-01: the CA's acme http01_port on loopback")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of the measured phase")
	fs.IntVar(&cfg.Concurrency, "concurrency", 32, "workers, each with its own account")
	fs.StringVar(&cfg.KeyType, "key-type", "ec256", "certificate keys: ec256 or rsa2048")
	fs.StringVar(&out, "json", "", "write the result here")
	fs.StringVar(&plot, "plot", "", "write an SVG of rate and latency over time here")
	fs.StringVar(&ceilingFile, "ceiling", "", "a 'bench ceiling' JSON from this session: report the run against it")
	fs.IntVar(&cfg.CAPid, "ca-pid", 0, "the CA's process on this machine: report its CPU per certificate over the measured phase")
	cpuProfile := fs.String("cpu-profile", "", "write the harness's own CPU profile here")
	quiet := fs.Bool("quiet", false, "no progress lines")
	return func([]string) int {
		tok, err := af.adminToken()
		if err != nil {
			return fail("bench acme: %v", err)
		}
		if *cpuProfile != "" {
			stop, err := startCPUProfile(*cpuProfile)
			if err != nil {
				return fail("bench acme: %v", err)
			}
			defer stop()
		}
		if cfg.Addr == "" || cfg.CAFile == "" || tok == "" {
			return fail("bench acme: -addr, -ca-file and -admin-token or -admin-token-file are required")
		}
		cfg.AdminToken = tok
		if !*quiet {
			cfg.Progress = os.Stderr
		}
		if ceilingFile != "" {
			c, err := bench.ReadResult(ceilingFile)
			if err != nil {
				return fail("bench acme: %v", err)
			}
			cfg.Ceiling = c.CertsPerSecond
		}
		r, err := bench.ACME(contextBackground(), cfg)
		if err != nil {
			return fail("bench acme: %v", err)
		}
		r.Summary(os.Stdout)
		return writeResult(r, out, plot)
	}
}

func writeResult(r *bench.Result, out, plot string) int {
	if out != "" {
		if err := r.WriteJSON(out); err != nil {
			return fail("bench: %v", err)
		}
	}
	if plot != "" {
		if err := r.WriteSVG(plot); err != nil {
			return fail("bench: %v", err)
		}
	}
	return 0
}

// startCPUProfile profiles this process into path until the returned
// function is called: what the harness itself costs.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

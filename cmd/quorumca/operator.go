//go:build !agent

package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/posener/complete"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/client"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/node"
	"github.com/quorumca/quorumca/signer"
)

func init() {
	register(&command{name: "operator", synopsis: "Operate a cluster: authorities, Raft, snapshots, admin recovery"},
		&command{name: "operator authority", synopsis: "Create, import, rotate and revoke authorities and their issuers"},
		&command{name: "operator authority create", synopsis: "An authority whose root and issuing keys are in a KMS or HSM", setup: authorityCreate},
		&command{name: "operator authority csr", synopsis: "A certificate request for an issuing key, for an offline root to sign", setup: authorityCSR},
		&command{name: "operator authority import", synopsis: "Install an intermediate signed by an offline root (new authority or new issuer)", setup: authorityImport},
		&command{name: "operator authority rotate", synopsis: "A new intermediate signed by the authority's root key", setup: authorityRotate},
		&command{name: "operator authority list", synopsis: "The authorities and their issuers", setup: authorityList},
		&command{name: "operator authority ocsp-responder", synopsis: "Show, set up (-key) or remove (-remove) an authority's delegated OCSP responder", setup: authorityOCSPResponder},
		&command{name: "operator authority scep-ra", synopsis: "Show, set up (-key) or remove (-remove) an authority's SCEP RA (an RSA key SCEP requests are encrypted to)", setup: authoritySCEPRA},
		&command{name: "operator authority revoke-issuer", synopsis: "Revoke an intermediate: it issues nothing more, the root's CRL lists it", setup: authorityRevokeIssuer},
		&command{name: "operator authority update", synopsis: "Set an authority's root key, base URL or CRL validity and refresh", setup: authorityUpdate,
			about: "With a root key set, the root signs the authority's root CRL itself."},
		&command{name: "operator authority crl-sign", synopsis: "An offline root's CRL, in three steps", setup: authorityCRLSign,
			about: "1. -name -request-out FILE: the cluster writes what the root's next CRL lists.\n2. -request FILE -root-key URI -out CRL: where the root's key is, offline, sign it.\n3. -name -import CRL: the cluster checks the CRL and serves it."},
		&command{name: "operator raft", synopsis: "The Raft configuration: list peers, remove one, transfer leadership"},
		&command{name: "operator raft list-peers", synopsis: "The Raft configuration", setup: raftListPeers},
		&command{name: "operator raft remove-peer", args: "ID", synopsis: "Remove a server from the Raft configuration", setup: raftRemovePeer},
		&command{name: "operator raft transfer-leadership", synopsis: "Hand leadership to another voter", setup: raftTransfer},
		&command{name: "operator wait-ready", synopsis: "Wait until a node has stayed ready (a new server, before it counts as in service)", setup: operatorWaitReady,
			about: "Asks the first -addr only (the node itself). Exits 0 once /v1/ready has answered 200 at every check for -stable, 1 at -timeout."},
		&command{name: "operator wait-healthy", synopsis: "Wait until the servers other than -without hold a healthy quorum (before and after stopping that one)", setup: operatorWaitHealthy,
			about: "Asks the leader's autopilot view, through any -addr. Exits 0 once the voters other than -without that are healthy make a quorum of all voters, 1 at -timeout."},
		&command{name: "operator snapshot", synopsis: "Save and restore the whole state"},
		&command{name: "operator snapshot save", args: "FILE", synopsis: "A consistent, checksummed snapshot of the whole state", setup: snapshotSave,
			predict: complete.PredictFiles("*")},
		&command{name: "operator snapshot restore", args: "FILE", synopsis: "Replace the cluster's state with a snapshot (disaster recovery)", setup: snapshotRestore,
			predict: complete.PredictFiles("*")},
		&command{name: "operator recover-admin", synopsis: "On a stopped node: a one-time admin token, committed when the node starts (break glass)", setup: recoverAdmin},
		&command{name: "operator compact", synopsis: "On a stopped node: give the state database's free pages back to the disk", setup: compact})
}

// apiFlags are the connection flags every client command takes, with
// QUORUMCA_* environment variables as defaults.
type apiFlags struct {
	addr, caFile, token, tokenFile, format string
}

func (f *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "", "API address, https://host:port, or several comma-separated to fail over (QUORUMCA_ADDR; default https://127.0.0.1:8443)")
	fs.StringVar(&f.caFile, "ca-file", "", "trust anchors of the API certificate (QUORUMCA_CA_FILE)")
	f.registerToken(fs)
	fs.StringVar(&f.format, "format", "table", "output: table or json")
}

// registerToken adds the admin token's flags: -admin-token is always the
// token, -admin-token-file a file holding it.
func (f *apiFlags) registerToken(fs *flag.FlagSet) {
	fs.StringVar(&f.token, "admin-token", "", "admin bearer token (QUORUMCA_ADMIN_TOKEN)")
	fs.StringVar(&f.tokenFile, "admin-token-file", "", "file holding the admin token (QUORUMCA_ADMIN_TOKEN_FILE)")
}

// adminToken is the token of the flags, else of the environment.
func (f *apiFlags) adminToken() (string, error) {
	if f.token != "" {
		// bench run's -admin-token once took a file: say so rather than
		// send a file name as a token.
		if _, err := os.Stat(f.token); err == nil {
			return "", fmt.Errorf("-admin-token takes the token itself; -admin-token-file %s reads it from the file", f.token)
		}
		return f.token, nil
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		return strings.TrimSpace(string(b)), err
	}
	cfg, err := client.Config{}.FromEnv()
	return cfg.AdminToken, err
}

func (f *apiFlags) client() (*client.Client, error) {
	if f.format != "table" && f.format != "json" {
		return nil, errors.New("-format must be table or json")
	}
	token, err := f.adminToken()
	if err != nil {
		return nil, err
	}
	cfg, err := client.Config{Addr: f.addr, CAFile: f.caFile, AdminToken: token}.FromEnv()
	if err != nil {
		return nil, err
	}
	if addrs := strings.Split(cfg.Addr, ","); len(addrs) > 1 {
		cfg.Addr, cfg.Addrs = addrs[0], addrs[1:]
	}
	return client.New(cfg)
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// contextBackground lives until the process is interrupted.
func contextBackground() context.Context {
	c, _ := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	return c
}

func authorityTable(as ...client.Authority) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "AUTHORITY\tISSUER\tACTIVE\tNOT AFTER\tKEY")
		for _, a := range as {
			for _, iss := range a.Issuers {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", a.Name, iss.ID, iss.Active, iss.NotAfter.Format(time.DateOnly), iss.KeyURI)
			}
		}
	}
}

// authorityResult prints one authority, or fails.
func authorityResult(a *client.Authority, err error) (*result, error) {
	if err != nil {
		return nil, err
	}
	return &result{a, authorityTable(*a)}, nil
}

func authorityCreate(fs *flag.FlagSet) func([]string) int {
	var req client.CreateAuthority
	fs.StringVar(&req.Name, "name", "", "authority name (required)")
	fs.StringVar(&req.RootKey, "root-key", "", "key URI of the root (awskms:..., pkcs11:...)")
	fs.StringVar(&req.Key, "key", "", "key URI of the issuing intermediate")
	fs.BoolVar(&req.CreateKeys, "create-keys", false, "create the keys in their backend first (the URIs name where)")
	fs.StringVar(&req.KeyAlgorithm, "key-algorithm", "EC_P256", "for -create-keys: EC_P256, EC_P384, RSA_2048, RSA_3072, RSA_4096")
	fs.StringVar(&req.RootCommonName, "root-cn", "", "root common name")
	fs.StringVar(&req.CommonName, "cn", "", "intermediate common name")
	fs.StringVar(&req.RootTTL, "root-ttl", "", "root lifetime (default 87600h)")
	fs.StringVar(&req.TTL, "ttl", "", "intermediate lifetime (default 43800h)")
	fs.StringVar(&req.BaseURL, "base-url", "", "plain-HTTP URL for CRL and OCSP in issued certificates")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		if req.Name == "" || req.RootKey == "" || req.Key == "" {
			return nil, errors.New("-name, -root-key and -key are required")
		}
		return authorityResult(c.CreateAuthority(cx, req))
	})
}

func authorityCSR(fs *flag.FlagSet) func([]string) int {
	var key client.KeyOptions
	var cn, outFile string
	fs.StringVar(&key.Key, "key", "", "key URI of the new intermediate (required)")
	fs.BoolVar(&key.CreateKeys, "create-key", false, "create the key in its backend first")
	fs.StringVar(&key.KeyAlgorithm, "key-algorithm", "EC_P256", "for -create-key")
	fs.StringVar(&cn, "cn", "", "intermediate common name")
	fs.StringVar(&outFile, "out", "", "write the CSR here (default: standard output)")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		if key.Key == "" {
			return nil, errors.New("-key is required")
		}
		csr, err := c.AuthorityCSR(cx, key, cn)
		if err != nil {
			return nil, err
		}
		if outFile == "" {
			fmt.Print(csr.CSR)
		} else if err := os.WriteFile(outFile, []byte(csr.CSR), 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "key: %s\nSign the request with the offline root, then run 'quorumca operator authority import'.\n", csr.Key)
		return nil, nil
	})
}

func authorityImport(fs *flag.FlagSet) func([]string) int {
	var req client.ImportAuthority
	var rootFile, certFile string
	fs.StringVar(&req.Name, "name", "", "authority name (required)")
	fs.StringVar(&rootFile, "root", "", "root certificate (PEM file, required)")
	fs.StringVar(&certFile, "cert", "", "the signed intermediate, and any certificates between it and the root (PEM file, required)")
	fs.StringVar(&req.Key, "key", "", "key URI of the intermediate (required)")
	fs.StringVar(&req.BaseURL, "base-url", "", "plain-HTTP URL for CRL and OCSP (new authorities)")
	fs.BoolVar(&req.KeepOthers, "keep-others", false, "add beside the current issuers instead of replacing them")
	fs.BoolVar(&req.NewRoot, "new-root", false, "root rotation: -root is a new root, added to the authority's trust anchors")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		if req.Name == "" || rootFile == "" || certFile == "" || req.Key == "" {
			return nil, errors.New("-name, -root, -cert and -key are required")
		}
		root, err := os.ReadFile(rootFile)
		if err != nil {
			return nil, err
		}
		chain, err := os.ReadFile(certFile)
		if err != nil {
			return nil, err
		}
		req.Root, req.Chain = string(root), string(chain)
		return authorityResult(c.ImportAuthority(cx, req))
	})
}

func authorityRotate(fs *flag.FlagSet) func([]string) int {
	var req client.RotateAuthority
	var name string
	fs.StringVar(&name, "name", "", "authority name (required)")
	fs.StringVar(&req.Key, "key", "", "key URI of the new intermediate (required)")
	fs.BoolVar(&req.CreateKeys, "create-key", false, "create the key in its backend first")
	fs.StringVar(&req.KeyAlgorithm, "key-algorithm", "EC_P256", "for -create-key")
	fs.StringVar(&req.CommonName, "cn", "", "intermediate common name")
	fs.StringVar(&req.TTL, "ttl", "", "intermediate lifetime")
	fs.BoolVar(&req.KeepOthers, "keep-others", false, "share issuance with the current issuers instead of replacing them")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		if name == "" || req.Key == "" {
			return nil, errors.New("-name and -key are required")
		}
		return authorityResult(c.RotateAuthority(cx, name, req))
	})
}

func authorityRevokeIssuer(fs *flag.FlagSet) func([]string) int {
	var name, issuer, reason string
	var force bool
	fs.BoolVar(&force, "force", false, "revoke the authority's last active issuer too (it then issues nothing)")
	fs.StringVar(&name, "name", "", "authority name (required)")
	fs.StringVar(&issuer, "issuer", "", "issuer ID, as authority list shows it (required)")
	fs.StringVar(&reason, "reason", "", "RFC 5280 reason name, e.g. keyCompromise, superseded (default unspecified)")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		if name == "" || issuer == "" {
			return nil, errors.New("-name and -issuer are required")
		}
		return authorityResult(c.RevokeIssuer(cx, name, issuer, reason, force))
	})
}

func authorityUpdate(fs *flag.FlagSet) func([]string) int {
	var name, rootKey, baseURL, validity, refresh string
	fs.StringVar(&name, "name", "", "authority name (required)")
	fs.StringVar(&rootKey, "root-key", "", "key URI of the root (KMS or HSM); \"none\" clears it")
	fs.StringVar(&baseURL, "base-url", "", "URL (a load balancer) that certificates name for CRLs, OCSP and issuer certificates")
	fs.StringVar(&validity, "crl-validity", "", "how long each CRL is valid (default 24h)")
	fs.StringVar(&refresh, "crl-refresh", "", "how often a CRL is signed anew without a revocation (default 1h)")
	shards := fs.Int("crl-shards", -1, "partition each issuer's CRL into this many shards (0 or 1: one CRL); reaches the active issuers that have one CRL, and later ones, for their life")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		if name == "" {
			return nil, errors.New("-name is required")
		}
		var req client.UpdateAuthority
		if rootKey == "none" {
			rootKey = ""
			req.RootKey = &rootKey
		} else if rootKey != "" {
			req.RootKey = &rootKey
		}
		if baseURL != "" {
			req.BaseURL = &baseURL
		}
		if validity != "" || refresh != "" {
			req.CRL = &client.CRLConfig{Validity: validity, Refresh: refresh}
		}
		if *shards >= 0 {
			if req.CRL == nil {
				req.CRL = &client.CRLConfig{}
			}
			req.CRL.Shards = shards
		}
		return authorityResult(c.UpdateAuthority(cx, name, req))
	})
}

// authorityCRLSign is the offline root's CRL ceremony in three steps:
// the cluster says what to sign, the root's holder signs it where the key
// is (no cluster needed), the cluster takes it after checking it.
func authorityCRLSign(fs *flag.FlagSet) func([]string) int {
	var name, root, requestOut, request, rootKey, outFile, importFile, validity string
	fs.StringVar(&name, "name", "", "authority name (with -request-out and -import)")
	fs.StringVar(&root, "root", "", "root ID (default: the authority's first root)")
	fs.StringVar(&requestOut, "request-out", "", "step 1: write the request for the root's next CRL here")
	fs.StringVar(&request, "request", "", "step 2, offline: sign this request...")
	fs.StringVar(&rootKey, "root-key", "", "...with the root's key (URI: pkcs11:, softkey:, awskms:)")
	fs.StringVar(&validity, "validity", "720h", "...valid this long")
	fs.StringVar(&outFile, "out", "", "...and write the CRL (PEM) here")
	fs.StringVar(&importFile, "import", "", "step 3: give the cluster the signed CRL (PEM)")
	var af apiFlags
	af.register(fs)
	return func([]string) int {
		c, err := af.client()
		if err != nil {
			return fail("%v", err)
		}
		cx, cancel := ctx()
		defer cancel()
		switch {
		case request != "":
			if rootKey == "" || outFile == "" {
				return fail("operator authority crl-sign: -request needs -root-key and -out")
			}
			d, err := time.ParseDuration(validity)
			if err != nil || d <= 0 {
				return fail("operator authority crl-sign: -validity: a duration such as 720h")
			}
			b, err := os.ReadFile(request)
			if err != nil {
				return fail("%v", err)
			}
			var req authority.RootCRLRequest
			if err := json.Unmarshal(b, &req); err != nil {
				return fail("operator authority crl-sign: %s: %v", request, err)
			}
			key, err := signer.Open(cx, rootKey)
			if err != nil {
				return fail("operator authority crl-sign: root key: %v", err)
			}
			der, err := authority.SignRootCRL(&req, signer.CryptoSigner(cx, key), d, time.Now())
			if err != nil {
				return fail("operator authority crl-sign: %v", err)
			}
			if err := os.WriteFile(outFile, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
				return fail("%v", err)
			}
			fmt.Fprintf(os.Stderr, "CRL number %d of %s's root, %d revoked intermediates, written to %s.\nImport it: quorumca operator authority crl-sign -name %s -import %s\n",
				req.Number, req.Authority, len(req.Revoked), outFile, req.Authority, outFile)
			return 0
		case name == "":
			return fail("operator authority crl-sign: -name is required with -request-out or -import")
		case requestOut != "":
			req, err := c.RootCRLRequest(cx, name, root)
			if err != nil {
				return fail("operator authority crl-sign: %v", err)
			}
			if err := os.WriteFile(requestOut, req, 0o644); err != nil {
				return fail("%v", err)
			}
			fmt.Fprintf(os.Stderr, "Request written to %s. Where the root's key is, run:\n  quorumca operator authority crl-sign -request %s -root-key <URI> -out root-crl.pem\n", requestOut, requestOut)
			return 0
		case importFile != "":
			b, err := os.ReadFile(importFile)
			if err != nil {
				return fail("%v", err)
			}
			id, err := c.ImportRootCRL(cx, name, b)
			if err != nil {
				return fail("operator authority crl-sign: %v", err)
			}
			fmt.Printf("root %s's CRL imported; served at /v1/authorities/%s/roots/%s/crl\n", id, name, id)
			return 0
		}
		return fail("operator authority crl-sign: give -request-out, -request or -import")
	}
}

func ocspResponderTable(r *client.OCSPResponder) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "AUTHORITY\tKEY\tTTL\tISSUER\tNOT AFTER")
		for _, c := range r.Certificates {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Authority, r.KeyURI, r.TTL, c.Issuer, c.NotAfter.Format(time.RFC3339))
		}
	}
}

func authorityOCSPResponder(fs *flag.FlagSet) func([]string) int {
	return authorityDelegate(fs, client.DelegateOCSP, "EC_P256", "168h; 4h to 2160h", "the issuing keys sign OCSP answers again")
}

func authoritySCEPRA(fs *flag.FlagSet) func([]string) int {
	return authorityDelegate(fs, client.DelegateSCEP, "RSA_2048", "8760h; 24h to 17520h", "SCEP is not served for the authority")
}

// authorityDelegate shows, sets up or removes an authority's delegated key
// of a role (client.Delegate*).
func authorityDelegate(fs *flag.FlagSet, role, alg, ttls, removed string) func([]string) int {
	var req client.SetOCSPResponder
	var name string
	var remove bool
	fs.StringVar(&name, "name", "", "authority name (required)")
	fs.StringVar(&req.Key, "key", "", "key URI: set it up (or replace the key); its certificates are renewed by the cluster")
	fs.BoolVar(&req.CreateKeys, "create-key", false, "create the key in its backend first")
	fs.StringVar(&req.KeyAlgorithm, "key-algorithm", alg, "for -create-key")
	fs.StringVar(&req.TTL, "ttl", "", "lifetime of each of its certificates (default "+ttls+")")
	fs.BoolVar(&remove, "remove", false, "remove it: "+removed)
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		switch {
		case name == "":
			return nil, errors.New("-name is required")
		case remove && req.Key != "":
			return nil, errors.New("-remove and -key exclude each other")
		case remove:
			return nil, c.DeleteDelegate(cx, role, name)
		}
		r, err := c.Delegate(cx, role, name)
		if req.Key != "" {
			r, err = c.SetDelegate(cx, role, name, req)
		}
		if err != nil {
			return nil, err
		}
		return &result{r, ocspResponderTable(r)}, nil
	})
}

func authorityList(fs *flag.FlagSet) func([]string) int {
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		as, err := c.Authorities(cx)
		return &result{as, authorityTable(as...)}, err
	})
}

func peerTable(ps ...client.Peer) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tRAFT ADDRESS\tAPI ADDRESS\tSUFFRAGE\tLEADER")
		for _, p := range ps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", p.ID, p.Address, p.APIAddr, p.Suffrage, p.Leader)
		}
	}
}

func raftListPeers(fs *flag.FlagSet) func([]string) int {
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		ps, err := c.Peers(cx)
		return &result{ps, peerTable(ps...)}, err
	})
}

func raftRemovePeer(fs *flag.FlagSet) func([]string) int {
	return apiCommand(fs, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		return nil, c.RemovePeer(cx, pos[0])
	})
}

func raftTransfer(fs *flag.FlagSet) func([]string) int {
	var to string
	fs.StringVar(&to, "to", "", "the voter to hand leadership to (default: the most up to date)")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		return nil, c.TransferLeadership(cx, to)
	})
}

// operatorWaitReady serves a new server's launch: it is in service only once it
// has been ready for a while, not just once its process answers.
func operatorWaitReady(fs *flag.FlagSet) func([]string) int {
	var af apiFlags
	af.register(fs)
	stable := fs.Duration("stable", time.Minute, "how long /v1/ready must answer 200 without a break")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	noAuthority := fs.Bool("no-authority-ok", false, "count a cluster with no authority yet (no_authority) as ready: the server joined and caught up, and has nothing to sign")
	return func([]string) int {
		c, err := af.client()
		if err != nil {
			return fail("%v", err)
		}
		cx, cancel := context.WithTimeout(contextBackground(), *timeout)
		defer cancel()
		accept := func(err error) bool {
			var e *client.Error
			return *noAuthority && errors.As(err, &e) && e.Code == "no_authority"
		}
		if err := c.WaitReady(cx, *stable, time.Second, accept, noteWait("not ready")); err != nil {
			return fail("%s: %v", fs.Name(), err)
		}
		fmt.Fprintf(os.Stderr, "ready for %v\n", *stable)
		return 0
	}
}

// operatorWaitHealthy serves a server's termination: it stops only while the others
// hold a healthy quorum, and its replacement starts only once they do again.
func operatorWaitHealthy(fs *flag.FlagSet) func([]string) int {
	var af apiFlags
	af.register(fs)
	without := fs.String("without", "", "the server to leave out (node_name; required)")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	down := fs.Bool("down", false, "also wait until the leader judges -without not healthy: it is down already, and stopping it changes nothing")
	return func([]string) int {
		if *without == "" {
			return fail("%s: -without is required", fs.Name())
		}
		c, err := af.client()
		if err != nil {
			return fail("%v", err)
		}
		cx, cancel := context.WithTimeout(contextBackground(), *timeout)
		defer cancel()
		check := func(h *client.Health) error {
			if err := h.QuorumWithout(*without); err != nil {
				return err
			}
			if *down && h.Healthy(*without) {
				return fmt.Errorf("%s is healthy", *without)
			}
			return nil
		}
		if err := c.WaitLeaderHealth(cx, 2*time.Second, check, noteWait("waiting")); err != nil {
			return fail("%s: %v", fs.Name(), err)
		}
		fmt.Fprintf(os.Stderr, "the servers other than %s hold a healthy quorum\n", *without)
		return 0
	}
}

// noteWait prints why a wait goes on, once per new reason.
func noteWait(prefix string) func(error) {
	return func(err error) { fmt.Fprintf(os.Stderr, "%s: %v\n", prefix, err) }
}

func snapshotSave(fs *flag.FlagSet) func([]string) int {
	return apiCommand(fs, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		tmp := pos[0] + ".partial"
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, err
		}
		defer os.Remove(tmp)
		if err := c.SaveSnapshot(contextBackground(), f); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, pos[0]); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "snapshot written to %s\n", pos[0])
		return nil, nil
	})
}

func snapshotRestore(fs *flag.FlagSet) func([]string) int {
	return apiCommand(fs, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		f, err := os.Open(pos[0])
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := c.RestoreSnapshot(contextBackground(), f); err != nil {
			return nil, err
		}
		fmt.Fprintln(os.Stderr, "snapshot restored")
		return nil, nil
	})
}

// recoverAdmin is the break-glass path when no admin credential works: on
// the console of a stopped node, it writes a recovery request into the
// node's data dir and prints the token once. The node commits it at its
// next start; the token may create one admin within the hour.
func recoverAdmin(fs *flag.FlagSet) func([]string) int {
	stopped := stoppedNodeFlags(fs)
	return func([]string) int {
		dataDir, code := stopped("recover-admin")
		if code >= 0 {
			return code
		}
		token, expires, err := node.RequestAdminRecovery(dataDir, time.Now())
		if err != nil {
			return fail("recover-admin: %v", err)
		}
		fmt.Println(token)
		fmt.Fprintf(os.Stderr, `
	This is a recovery admin token; it is shown only this once. Now start the node:
	it commits the token when the cluster has a leader (audit actor "node:<name> recover-admin").
	Then create an admin with it before %s (the token creates one, then is used up):
	  QUORUMCA_ADMIN_TOKEN=<token> quorumca admin create -name NAME -role admin
	`, expires.Local().Format(time.DateTime))
		return 0
	}
}

// stoppedNodeFlags adds -config and -data-dir, for tools that act on a
// stopped node's files, and returns what reads them: the data dir, or an
// exit code (-1 when there is none) after saying what is wrong.
func stoppedNodeFlags(fs *flag.FlagSet) func(cmd string) (string, int) {
	configPath := fs.String("config", "", "the stopped node's HCL config file (its data_dir is used)")
	dataDir := fs.String("data-dir", "", "the stopped node's data dir, instead of -config")
	return func(cmd string) (string, int) {
		if (*configPath == "") == (*dataDir == "") {
			return "", usageError(fs.Name(), "give -config FILE or -data-dir DIR (the node must be stopped)")
		}
		if *configPath == "" {
			return *dataDir, -1
		}
		cfg, err := node.Load(*configPath)
		if err != nil {
			return "", fail("%s: %v", cmd, err)
		}
		return cfg.DataDir, -1
	}
}

// compact gives a stopped node's state database back its free pages (see
// fsm.Compact): bbolt never shrinks its file, so after retention first
// removes a large backlog the space stays taken until this runs.
func compact(fs *flag.FlagSet) func([]string) int {
	stopped := stoppedNodeFlags(fs)
	return func([]string) int {
		dataDir, code := stopped("compact")
		if code >= 0 {
			return code
		}
		path := stateFile(dataDir)
		if _, err := os.Stat(path); err != nil {
			return fail("compact: %s is not a node's data dir: %v", dataDir, err)
		}
		start := time.Now()
		before, after, err := fsm.Compact(path)
		if err != nil {
			return fail("compact: %v", err)
		}
		fmt.Printf("%s: %.1f MiB -> %.1f MiB in %s\n", path, float64(before)/(1<<20), float64(after)/(1<<20), time.Since(start).Round(time.Millisecond))
		return 0
	}
}

//go:build !agent

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/quorumca/quorumca/agent"
	"github.com/quorumca/quorumca/client"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/archive"
	"github.com/quorumca/quorumca/internal/atomicfile"
)

// The admin commands: quorumca provisioner|token|cert|admin|audit|crl <action>.

func init() {
	register(&command{name: "provisioner", synopsis: "Manage provisioners (who may get which certificate)"},
		&command{name: "provisioner list", synopsis: "List provisioners", setup: provisionerList},
		&command{name: "provisioner get", args: "NAME", synopsis: "Show one provisioner", setup: provisionerGet},
		&command{name: "provisioner create", synopsis: "Create a provisioner from a JSON document (-f FILE, - for stdin)", setup: provisionerWrite},
		&command{name: "provisioner update", args: "NAME", synopsis: "Replace a provisioner from a JSON document carrying the version read", setup: provisionerWrite},
		&command{name: "provisioner delete", args: "NAME", synopsis: "Delete a provisioner (-force revokes its outstanding tokens)", setup: provisionerDelete},

		&command{name: "token", synopsis: "Mint, list and revoke enrollment tokens"},
		&command{name: "token create", synopsis: "Mint enrollment tokens (-sans, -count N for a fleet file)", setup: tokenCreate},
		&command{name: "token list", synopsis: "List outstanding tokens", setup: tokenList},
		&command{name: "token revoke", args: "ID", synopsis: "Revoke an unused token", setup: tokenRevoke},

		&command{name: "cert", synopsis: "Search and revoke issued certificates"},
		&command{name: "cert list", synopsis: "Search certificates", setup: certList},
		&command{name: "cert get", args: "SERIAL", synopsis: "Show one certificate", setup: certGet},
		&command{name: "cert revoke", args: "SERIAL", synopsis: "Revoke a certificate", setup: certRevoke},

		&command{name: "admin", synopsis: "Manage admin credentials"},
		&command{name: "admin list", synopsis: "List admin credentials", setup: adminList},
		&command{name: "admin create", synopsis: "Create an admin: a token, or with -csr a client certificate", setup: adminCreate},
		&command{name: "admin revoke", args: "ID", synopsis: "Revoke an admin credential", setup: adminRevoke},
		&command{name: "admin whoami", synopsis: "Show the credential in use", setup: adminWhoami},

		&command{name: "audit", synopsis: "Read, follow and verify the audit log"},
		&command{name: "audit list", synopsis: "List (or -follow) audit entries", setup: auditList},
		&command{name: "audit verify", synopsis: "Verify the audit hash chain, online or in a data dir (-data-dir)", setup: auditVerify},

		&command{name: "crl", synopsis: "Fetch an authority's CRLs for relying parties (nginx, HAProxy)"},
		&command{name: "crl fetch", synopsis: "Write an authority's current CRLs as one PEM file", setup: crlFetch,
			about: "The root's and each issuer's CRL, in one file (-out) for nginx ssl_crl or HAProxy\ncrl-file. The file is replaced atomically, never by an older CRL; the output says\nwhether it changed, for a reload hook."})
}

func out(af *apiFlags, v any, table func(*tabwriter.Writer)) int {
	if af.format == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fail("%v", err)
		}
		return 0
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	table(tw)
	tw.Flush()
	return 0
}

func readDoc(path string, v any) error {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// result is what an action prints: the value for -format json, and a
// table for people.
type result struct {
	v     any
	table func(*tabwriter.Writer)
}

// apiCommand adds the connection flags to fs and returns what makes the
// API call with the positional arguments and prints its result.
func apiCommand(fs *flag.FlagSet, run func(cx context.Context, c *client.Client, pos []string) (*result, error)) func([]string) int {
	var af apiFlags
	af.register(fs)
	return func(pos []string) int {
		c, err := af.client()
		if err != nil {
			return fail("%v", err)
		}
		cx, cancel := ctx()
		defer cancel()
		r, err := run(cx, c, pos)
		if err != nil {
			return fail("%s: %v", fs.Name(), err)
		}
		if r == nil {
			return 0
		}
		if r.table == nil {
			af.format = "json" // a document reads best whole
		}
		return out(&af, r.v, r.table)
	}
}

func provisionerTable(ps ...client.Provisioner) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "NAME\tKIND\tAUTHORITY\tVERSION\tDNS\tDEFAULT TTL\tEKU")
		for _, p := range ps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", p.Name, p.Kind, p.Authority, p.Version,
				strings.Join(p.Policy.DNS, ","), p.Policy.DefaultTTL, p.Policy.EKU)
		}
	}
}

func provisionerList(fs *flag.FlagSet) func([]string) int {
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		ps, err := c.Provisioners(cx)
		return &result{ps, provisionerTable(ps...)}, err
	})
}

func provisionerGet(fs *flag.FlagSet) func([]string) int {
	return apiCommand(fs, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		p, err := c.Provisioner(cx, pos[0])
		return &result{v: p}, err
	})
}

// provisionerWrite creates, or with NAME updates, from -f.
func provisionerWrite(fs *flag.FlagSet) func([]string) int {
	var file string
	fs.StringVar(&file, "f", "", "provisioner JSON document (- for standard input); an update carries the version it replaces")
	return apiCommand(fs, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		var p client.Provisioner
		if file == "" {
			return nil, errors.New("-f is required")
		}
		if err := readDoc(file, &p); err != nil {
			return nil, err
		}
		var got *client.Provisioner
		var err error
		if len(pos) == 0 {
			got, err = c.CreateProvisioner(cx, p)
		} else {
			p.Name = pos[0]
			got, err = c.UpdateProvisioner(cx, p)
		}
		if err != nil {
			return nil, err
		}
		return &result{got, provisionerTable(*got)}, nil
	})
}

func provisionerDelete(fs *flag.FlagSet) func([]string) int {
	var force bool
	fs.BoolVar(&force, "force", false, "delete even with outstanding tokens (they are revoked)")
	return apiCommand(fs, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		return nil, c.DeleteProvisioner(cx, pos[0], force)
	})
}

// listFlag collects repeated flags.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func tokenTable(withSecret bool, ts ...client.Token) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "TOKEN\tID\tPROVISIONER\tSANS\tEXPIRES")
		for _, t := range ts {
			secret := "-"
			if withSecret {
				secret = t.Token
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", secret, t.ID, t.Provisioner, strings.Join(t.SANs, ","), t.ExpiresAt.Format(time.RFC3339))
		}
	}
}

func tokenCreate(fs *flag.FlagSet) func([]string) int {
	var req client.TokenRequest
	var sans, outFile, bundleDir, bundleAddr, bundleRoots string
	var props listFlag
	fs.StringVar(&sans, "sans", "", "comma-separated names the token allows; {n} is the token's number in a batch")
	fs.StringVar(&req.TTL, "ttl", "", "token lifetime (default 24h)")
	fs.StringVar(&req.Provisioner, "provisioner", "", "enrollment-token provisioner (default: the default one)")
	fs.IntVar(&req.Count, "count", 1, "tokens to mint (a fleet roll-out)")
	fs.Var(&props, "property", "`key=value` copied into the certificate record (repeatable)")
	fs.StringVar(&outFile, "out", "", "write the secrets here, one per line (default: standard output)")
	fs.StringVar(&bundleDir, "bundle-dir", "", "write one enrollment bundle per token here, for 'quorumca agent -bundle'")
	fs.StringVar(&bundleAddr, "bundle-addr", "", "CA addresses devices use, comma-separated (default QUORUMCA_ADDR)")
	fs.StringVar(&bundleRoots, "bundle-roots", "", "PEM roots that verify the CA's API certificate (default QUORUMCA_CA_FILE)")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		if sans == "" {
			return nil, errors.New("-sans is required")
		}
		var bundle *agent.Bundle
		if bundleDir != "" {
			var err error
			if bundle, err = bundleTemplate(bundleAddr, bundleRoots); err != nil {
				return nil, err
			}
		}
		req.SANs = strings.Split(sans, ",")
		for _, p := range props {
			k, v, ok := strings.Cut(p, "=")
			if !ok {
				return nil, errors.New("-property wants key=value")
			}
			if req.Properties == nil {
				req.Properties = map[string]string{}
			}
			req.Properties[k] = v
		}
		toks, err := c.MintTokens(cx, req)
		if err == nil && bundle != nil {
			return nil, writeBundles(bundleDir, bundle, toks)
		}
		if err != nil || outFile == "" {
			return &result{toks, tokenTable(true, toks...)}, err
		}
		var b strings.Builder
		for _, t := range toks {
			b.WriteString(t.Token + "\n")
		}
		if err := os.WriteFile(outFile, []byte(b.String()), 0o600); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "%d token(s) written to %s (shown only this once)\n", len(toks), outFile)
		return nil, nil
	})
}

// bundleTemplate is an enrollment bundle without token and names.
func bundleTemplate(addrs, rootsFile string) (*agent.Bundle, error) {
	if addrs == "" {
		addrs = os.Getenv("QUORUMCA_ADDR")
	}
	if rootsFile == "" {
		rootsFile = os.Getenv("QUORUMCA_CA_FILE")
	}
	if addrs == "" || rootsFile == "" {
		return nil, errors.New("-bundle-dir needs -bundle-addr and -bundle-roots (or QUORUMCA_ADDR and QUORUMCA_CA_FILE)")
	}
	roots, err := os.ReadFile(rootsFile)
	if err != nil {
		return nil, err
	}
	return &agent.Bundle{Addrs: strings.Split(addrs, ","), Roots: string(roots)}, nil
}

// writeBundles writes one bundle per token, named after its first name.
func writeBundles(dir string, tmpl *agent.Bundle, toks []client.Token) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, t := range toks {
		b := *tmpl
		b.Token, b.Names = t.Token, t.SANs
		if _, err := agent.ParseBundle(mustJSON(b)); err != nil {
			return fmt.Errorf("token %s: %v", t.ID, err)
		}
		name := "token"
		if len(t.SANs) > 0 {
			name = strings.Map(func(r rune) rune {
				if r == '.' || r == '-' || r == '_' || r == '@' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
					return r
				}
				return '_'
			}, t.SANs[0])
		}
		path := filepath.Join(dir, name+".json")
		if _, err := os.Stat(path); err == nil {
			path = filepath.Join(dir, name+"-"+t.ID+".json")
		}
		if err := b.Write(path); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "%d enrollment bundle(s) written to %s (each holds a secret token)\n", len(toks), dir)
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func tokenList(fs *flag.FlagSet) func([]string) int {
	var prov string
	fs.StringVar(&prov, "provisioner", "", "only this provisioner's tokens")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		var all []client.Token
		for cursor := ""; ; {
			toks, next, err := c.Tokens(cx, prov, cursor)
			if err != nil {
				return nil, err
			}
			all = append(all, toks...)
			if cursor = next; next == "" {
				return &result{all, tokenTable(false, all...)}, nil
			}
		}
	})
}

func tokenRevoke(fs *flag.FlagSet) func([]string) int {
	return apiCommand(fs, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		return nil, c.RevokeToken(cx, pos[0])
	})
}

func certTable(cs ...client.Cert) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "SERIAL\tSTATUS\tNOT AFTER\tPROVISIONER\tSANS")
		for _, c := range cs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Serial, c.Status, c.NotAfter.Format(time.RFC3339), c.Provisioner, strings.Join(c.SANs, ","))
		}
	}
}

func certList(fs *flag.FlagSet) func([]string) int {
	var q client.CertQuery
	var max int
	fs.StringVar(&q.SAN, "san", "", "certificates carrying this name")
	fs.StringVar(&q.Provisioner, "provisioner", "", "issued through this provisioner")
	fs.StringVar(&q.Property, "property", "", "with this token property (key=value)")
	fs.StringVar(&q.Status, "status", "", "valid, revoked or expired")
	fs.StringVar(&q.ExpiresAfter, "expires-after", "", "expiring at or after (RFC 3339)")
	fs.StringVar(&q.ExpiresBefore, "expires-before", "", "expiring before (RFC 3339)")
	fs.IntVar(&max, "max", 1000, "at most this many")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		var all []client.Cert
		for {
			cs, next, err := c.SearchCerts(cx, q)
			if err != nil {
				return nil, err
			}
			all = append(all, cs...)
			if q.Cursor = next; next == "" || len(all) >= max {
				return &result{all, certTable(all...)}, nil
			}
		}
	})
}

func certGet(fs *flag.FlagSet) func([]string) int {
	return apiCommand(fs, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		cs, _, err := c.SearchCerts(cx, client.CertQuery{Serial: pos[0]})
		if err != nil {
			return nil, err
		}
		return &result{v: cs[0]}, nil
	})
}

func certRevoke(fs *flag.FlagSet) func([]string) int {
	var reason string
	fs.StringVar(&reason, "reason", "", "RFC 5280 reason: keyCompromise, superseded, cessationOfOperation, ...")
	return apiCommand(fs, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		got, err := c.RevokeCert(cx, pos[0], reason)
		if err != nil {
			return nil, err
		}
		return &result{got, certTable(*got)}, nil
	})
}

func adminTable(as ...client.Admin) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tNAME\tROLE\tKIND\tEXPIRES\tREVOKED")
		for _, a := range as {
			exp, rev := "-", "-"
			if !a.ExpiresAt.IsZero() {
				exp = a.ExpiresAt.Format(time.RFC3339)
			}
			if !a.RevokedAt.IsZero() {
				rev = a.RevokedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Name, a.Role, a.Kind, exp, rev)
		}
	}
}

func adminList(fs *flag.FlagSet) func([]string) int {
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		as, err := c.Admins(cx)
		return &result{as, adminTable(as...)}, err
	})
}

func adminCreate(fs *flag.FlagSet) func([]string) int {
	var name, role, ttl, csrFile, certOut string
	fs.StringVar(&name, "name", "", "admin name (required)")
	fs.StringVar(&role, "role", "", "admin, operator or auditor (required)")
	fs.StringVar(&ttl, "ttl", "", "lifetime of the credential")
	fs.StringVar(&csrFile, "csr", "", "a CSR (PEM file): issue a client certificate of the admin authority instead of a token")
	fs.StringVar(&certOut, "out", "", "with -csr: write the certificate chain here")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		var csr []byte
		if csrFile != "" {
			var err error
			if csr, err = os.ReadFile(csrFile); err != nil {
				return nil, err
			}
		}
		got, err := c.CreateAdmin(cx, name, role, ttl, string(csr))
		if err != nil {
			return nil, err
		}
		if got.Certificate != "" && certOut != "" {
			if err := os.WriteFile(certOut, []byte(got.Certificate+strings.Join(got.Chain, "")), 0o644); err != nil {
				return nil, err
			}
		}
		return &result{got, func(tw *tabwriter.Writer) {
			adminTable(got.Admin)(tw)
			if got.Token != "" {
				fmt.Fprintf(tw, "\ntoken (shown only this once): %s\n", got.Token)
			}
		}}, nil
	})
}

func adminRevoke(fs *flag.FlagSet) func([]string) int {
	return apiCommand(fs, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		return nil, c.RevokeAdmin(cx, pos[0])
	})
}

func adminWhoami(fs *flag.FlagSet) func([]string) int {
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		a, err := c.WhoAmI(cx)
		if err != nil {
			return nil, err
		}
		return &result{a, adminTable(*a)}, nil
	})
}

func auditLine(w io.Writer, e client.AuditEntry) {
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, time.Unix(0, e.Time).UTC().Format(time.RFC3339), e.Command,
		e.Outcome, e.Actor, e.Remote, e.Note)
}

func auditList(fs *flag.FlagSet) func([]string) int {
	var q client.AuditQuery
	fs.Uint64Var(&q.After, "after", 0, "entries after this sequence number (with -follow: 0 streams new entries only)")
	fs.StringVar(&q.Command, "command", "", "only this command (issue, revoke, provisioner_put, ...)")
	fs.StringVar(&q.Actor, "actor", "", "only this actor")
	follow := fs.Bool("follow", false, "keep streaming new entries")
	var af apiFlags
	af.register(fs)
	return func([]string) int {
		c, err := af.client()
		if err != nil {
			return fail("%v", err)
		}
		if *follow {
			w := bufio.NewWriter(os.Stdout)
			err := c.FollowAudit(contextBackground(), q, func(e client.AuditEntry) error {
				if af.format == "json" {
					b, _ := json.Marshal(e)
					fmt.Fprintln(w, string(b))
				} else {
					auditLine(w, e)
				}
				return w.Flush()
			})
			if err != nil {
				return fail("audit list: %v", err)
			}
			return 0
		}
		cx, cancel := ctx()
		defer cancel()
		var all []client.AuditEntry
		q.Limit = 1000 // pages as large as the server gives, followed by their cursors
		if err := c.AuditAll(cx, q, func(e client.AuditEntry) error { all = append(all, e); return nil }); err != nil {
			return fail("audit list: %v", err)
		}
		return out(&af, all, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "SEQ\tTIME\tCOMMAND\tOUTCOME\tACTOR\tREMOTE\tNOTE")
			for _, e := range all {
				auditLine(tw, e)
			}
		})
	}
}

// auditVerify checks the hash chain: of a state database in a data dir
// (a stopped node's, or a copy), or online, entry by entry from the API.
// A chain cut by retention starts at a checkpoint signed by the cluster
// CA key: its fingerprint must be the cluster's (-cluster-ca-fingerprint,
// or online the node's). With -archive, the archived segments are
// verified from the first entry to the checkpoint: the whole history.
func auditVerify(fs *flag.FlagSet) func([]string) int {
	dataDir := fs.String("data-dir", "", "verify the state database of this node data dir instead of asking the API")
	archiveURI := fs.String("archive", "", "also verify the archived entries, from the first to the checkpoint: file:///dir or s3://bucket/prefix")
	pin := fs.String("cluster-ca-fingerprint", "", "the cluster CA fingerprint (hex SHA-256 of its public key) that must sign the checkpoint; online, the node's by default")
	var af apiFlags
	af.register(fs)
	return func([]string) int {
		cx, cancel := ctx()
		defer cancel()
		var (
			cp     *fsm.AuditCheckpoint
			kept   uint64
			err    error
			expect = strings.ToLower(*pin)
		)
		if *dataDir != "" {
			kept, cp, err = fsm.VerifyAuditFile(stateFile(*dataDir))
		} else {
			kept, cp, expect, err = auditVerifyOnline(cx, &af, expect)
		}
		if err != nil {
			return fail("audit verify: %v", err)
		}
		from := uint64(1)
		if cp != nil {
			fp, err := fsm.VerifyCheckpoint(*cp)
			if err != nil {
				return fail("audit verify: %v", err)
			}
			if expect != "" && fp != expect {
				return fail("audit verify: the checkpoint at entry %d is signed by key %s, not the cluster CA's %s", cp.Seq, fp, expect)
			}
			fmt.Printf("checkpoint at entry %d, signed by key %s%s\n", cp.Seq, fp, map[bool]string{true: " (the cluster CA's)", false: ""}[fp == expect])
			from = cp.Seq + 1
		}
		if *archiveURI != "" {
			store, err := archive.Open(cx, *archiveURI)
			if err != nil {
				return fail("audit verify: %v", err)
			}
			n, err := fsm.VerifyAuditArchive(cx, store, cp)
			if err != nil {
				return fail("audit verify: archive: %v", err)
			}
			fmt.Printf("archive verified: entries 1-%d\n", n)
			from = 1
		}
		fmt.Printf("audit chain verified: %d entries in the state (from entry %d)\n", kept, from)
		return 0
	}
}

// auditVerifyOnline verifies the kept chain page by page from the API,
// and returns the checkpoint it starts at and the fingerprint the
// checkpoint must have (pin, or the node's cluster CA).
func auditVerifyOnline(cx context.Context, af *apiFlags, pin string) (uint64, *fsm.AuditCheckpoint, string, error) {
	c, err := af.client()
	if err != nil {
		return 0, nil, "", err
	}
	if pin == "" {
		h, err := c.Health(cx)
		if err != nil {
			return 0, nil, "", err
		}
		pin = h.ClusterCA
	}
	var (
		chain fsm.AuditChain
		cp    *fsm.AuditCheckpoint
		n     uint64
	)
	q := client.AuditQuery{Limit: 1000}
	for {
		p, err := c.AuditPage(cx, q)
		if err != nil {
			return n, cp, pin, err
		}
		if p.Checkpoint != nil && cp == nil && n == 0 {
			c := fsm.AuditCheckpoint(*p.Checkpoint)
			cp = &c
			chain = fsm.AuditChain{Seq: c.Seq, Prev: c.Hash}
		}
		for _, e := range p.Entries {
			if err := chain.Next(fsm.AuditEntry(e)); err != nil {
				return n, cp, pin, err
			}
			n++
		}
		if !p.More {
			return n, cp, pin, nil
		}
		q.After = p.NextAfter
	}
}

// stateFile is the state database of a data dir, or the path itself if it
// names the file.
func stateFile(dataDir string) string {
	if st, err := os.Stat(dataDir); err == nil && !st.IsDir() {
		return dataDir
	}
	return filepath.Join(dataDir, "state.db")
}

// crlFetch writes the CRL bundle atomically, so a server reloading at any
// moment reads a whole file; it says whether the file changed, for a
// reload hook.
func crlFetch(fs *flag.FlagSet) func([]string) int {
	var name, outFile string
	fs.StringVar(&name, "authority", "default", "authority name")
	fs.StringVar(&outFile, "out", "", "PEM file to write (required)")
	return apiCommand(fs, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
		if outFile == "" {
			return nil, errors.New("-out is required")
		}
		bundle, err := c.CRLBundle(cx, name)
		if err != nil {
			return nil, err
		}
		type crlInfo struct {
			Issuer     string    `json:"issuer"`
			Number     string    `json:"number"`
			NextUpdate time.Time `json:"next_update"`
		}
		fresh, err := parseCRLs(bundle)
		if err != nil {
			return nil, fmt.Errorf("the CA sent a CRL that does not parse: %v", err)
		}
		if len(fresh) == 0 {
			return nil, errors.New("the CA sent no CRL")
		}
		old, _ := os.ReadFile(outFile)
		// Never back: an older CRL (replayed by whatever is between us
		// and the CA) would un-revoke what the file already lists.
		kept, _ := parseCRLs(old)
		var crls []crlInfo
		for _, l := range fresh {
			for _, k := range kept {
				if crlScope(k) == crlScope(l) && l.Number.Cmp(k.Number) < 0 {
					return nil, fmt.Errorf("the CA sent CRL number %v of %s, older than number %v in %s: not written", l.Number, l.Issuer, k.Number, outFile)
				}
			}
			crls = append(crls, crlInfo{Issuer: l.Issuer.String(), Number: l.Number.String(), NextUpdate: l.NextUpdate})
		}
		changed := !bytes.Equal(old, bundle)
		if changed {
			if err := atomicfile.Write(outFile, bundle, 0o644); err != nil {
				return nil, err
			}
		}
		v := struct {
			File    string    `json:"file"`
			Changed bool      `json:"changed"`
			CRLs    []crlInfo `json:"crls"`
		}{outFile, changed, crls}
		return &result{v, func(tw *tabwriter.Writer) {
			fmt.Fprintf(tw, "%s: %d CRLs, changed: %v\n", outFile, len(crls), changed)
			fmt.Fprintln(tw, "ISSUER\tNUMBER\tNEXT UPDATE")
			for _, c := range crls {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Issuer, c.Number, c.NextUpdate.Format(time.RFC3339))
			}
		}}, nil
	})
}

// crlScope is what a CRL's number counts within: its issuer's name and
// key (a rotated intermediate may keep its predecessor's name) and its
// issuing distribution point (each shard of a partitioned CRL is numbered
// apart from the others and from the complete CRL).
func crlScope(l *x509.RevocationList) string {
	scope := string(l.RawIssuer) + "\x00" + string(l.AuthorityKeyId)
	for _, e := range l.Extensions {
		if e.Id.Equal(oidIssuingDistributionPoint) {
			scope += "\x00" + string(e.Value)
		}
	}
	return scope
}

// oidIssuingDistributionPoint is RFC 5280's id-ce-issuingDistributionPoint.
var oidIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}

// parseCRLs reads every X509 CRL block of a PEM file.
func parseCRLs(b []byte) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return out, nil
		}
		l, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
}

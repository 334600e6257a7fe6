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
	"github.com/quorumca/quorumca/internal/atomicfile"
)

// The admin commands: quorumca provisioner|token|cert|admin|audit <action>.

type action struct {
	name, synopsis string
	run            func([]string) int
}

func group(name string, actions []action) func([]string) int {
	return func(args []string) int {
		for _, a := range actions {
			if len(args) > 0 && args[0] == a.name {
				return a.run(args[1:])
			}
		}
		fmt.Fprintf(os.Stderr, "Usage: quorumca %s <action> [flags]\n\n", name)
		for _, a := range actions {
			fmt.Fprintf(os.Stderr, "  %-8s %s\n", a.name, a.synopsis)
		}
		return 2
	}
}

func init() {
	register(command{"operator", "Operate a cluster: authorities (create, import, rotate)", runOperator},
		command{"provisioner", "Manage provisioners (who may get which certificate)", runProvisioner},
		command{"token", "Mint, list and revoke enrollment tokens", runToken},
		command{"cert", "Search and revoke issued certificates", runCert},
		command{"admin", "Manage admin credentials", runAdmin},
		command{"audit", "Read, follow and verify the audit log", runAudit},
		command{"crl", "Fetch an authority's CRLs for relying parties (nginx, HAProxy)", runCRL})
}

var (
	runProvisioner = group("provisioner", []action{
		{"list", "list provisioners", provisionerList},
		{"get", "show one provisioner (NAME)", provisionerGet},
		{"create", "create from a JSON document (-f FILE, - for stdin)", provisionerCreate},
		{"update", "replace NAME from a JSON document carrying the version read", provisionerUpdate},
		{"delete", "delete NAME (-force revokes its outstanding tokens)", provisionerDelete},
	})
	runToken = group("token", []action{
		{"create", "mint enrollment tokens (-sans, -count N for a fleet file)", tokenCreate},
		{"list", "list outstanding tokens", tokenList},
		{"revoke", "revoke an unused token (ID)", tokenRevoke},
	})
	runCert = group("cert", []action{
		{"list", "search certificates", certList},
		{"get", "show one certificate (SERIAL)", certGet},
		{"revoke", "revoke a certificate (SERIAL)", certRevoke},
	})
	runAdmin = group("admin", []action{
		{"list", "list admin credentials", adminList},
		{"create", "create an admin: a token, or with -csr a client certificate", adminCreate},
		{"revoke", "revoke an admin credential (ID)", adminRevoke},
		{"whoami", "show the credential in use", adminWhoami},
	})
	runCRL = group("crl", []action{
		{"fetch", "write an authority's current CRLs, root and issuers, as one PEM file (-out FILE) for nginx ssl_crl or HAProxy crl-file", crlFetch},
	})
	runAudit = group("audit", []action{
		{"list", "list (or -follow) audit entries", auditList},
		{"verify", "verify the audit hash chain, online or in a data dir (-data-dir)", auditVerify},
	})
)

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

// apiCommand builds an action: flags adds its flags, npos is its number of
// positional arguments, run makes the API call.
func apiCommand(name string, npos int, flags func(*flag.FlagSet),
	run func(cx context.Context, c *client.Client, pos []string) (*result, error)) func([]string) int {
	return func(args []string) int {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		if flags != nil {
			flags(fs)
		}
		var af apiFlags
		c, pos, code, ok := parseWith(fs, &af, args, npos)
		if !ok {
			return code
		}
		cx, cancel := ctx()
		defer cancel()
		r, err := run(cx, c, pos)
		if err != nil {
			return fail("%s: %v", name, err)
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

var provisionerList = apiCommand("provisioner list", 0, nil, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
	ps, err := c.Provisioners(cx)
	return &result{ps, provisionerTable(ps...)}, err
})

var provisionerGet = apiCommand("provisioner get", 1, nil, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
	p, err := c.Provisioner(cx, pos[0])
	return &result{v: p}, err
})

// provisionerWrite creates (npos 0) or updates (npos 1: NAME) from -f.
func provisionerWrite(name string, npos int) func([]string) int {
	var file string
	return apiCommand(name, npos, func(fs *flag.FlagSet) {
		fs.StringVar(&file, "f", "", "provisioner JSON document (- for standard input); an update carries the version it replaces")
	}, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		var p client.Provisioner
		if file == "" {
			return nil, errors.New("-f is required")
		}
		if err := readDoc(file, &p); err != nil {
			return nil, err
		}
		var got *client.Provisioner
		var err error
		if npos == 0 {
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

var (
	provisionerCreate = provisionerWrite("provisioner create", 0)
	provisionerUpdate = provisionerWrite("provisioner update", 1)
)

func provisionerDelete(args []string) int {
	var force bool
	return apiCommand("provisioner delete", 1, func(fs *flag.FlagSet) {
		fs.BoolVar(&force, "force", false, "delete even with outstanding tokens (they are revoked)")
	}, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		return nil, c.DeleteProvisioner(cx, pos[0], force)
	})(args)
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

func tokenCreate(args []string) int {
	var req client.TokenRequest
	var sans, outFile, bundleDir, bundleAddr, bundleRoots string
	var props listFlag
	return apiCommand("token create", 0, func(fs *flag.FlagSet) {
		fs.StringVar(&sans, "sans", "", "comma-separated names the token allows; {n} is the token's number in a batch")
		fs.StringVar(&req.TTL, "ttl", "", "token lifetime (default 24h)")
		fs.StringVar(&req.Provisioner, "provisioner", "", "enrollment-token provisioner (default: the default one)")
		fs.IntVar(&req.Count, "count", 1, "tokens to mint (a fleet roll-out)")
		fs.Var(&props, "property", "key=value copied into the certificate record (repeatable)")
		fs.StringVar(&outFile, "out", "", "write the secrets here, one per line (default: standard output)")
		fs.StringVar(&bundleDir, "bundle-dir", "", "write one enrollment bundle per token here, for 'quorumca agent -bundle'")
		fs.StringVar(&bundleAddr, "bundle-addr", "", "CA addresses devices use, comma-separated (default QUORUMCA_ADDR)")
		fs.StringVar(&bundleRoots, "bundle-roots", "", "PEM roots that verify the CA's API certificate (default QUORUMCA_CA_FILE)")
	}, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
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
	})(args)
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

func tokenList(args []string) int {
	var prov string
	return apiCommand("token list", 0, func(fs *flag.FlagSet) {
		fs.StringVar(&prov, "provisioner", "", "only this provisioner's tokens")
	}, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
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
	})(args)
}

var tokenRevoke = apiCommand("token revoke", 1, nil, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
	return nil, c.RevokeToken(cx, pos[0])
})

func certTable(cs ...client.Cert) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "SERIAL\tSTATUS\tNOT AFTER\tPROVISIONER\tSANS")
		for _, c := range cs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Serial, c.Status, c.NotAfter.Format(time.RFC3339), c.Provisioner, strings.Join(c.SANs, ","))
		}
	}
}

func certList(args []string) int {
	var q client.CertQuery
	var max int
	return apiCommand("cert list", 0, func(fs *flag.FlagSet) {
		fs.StringVar(&q.SAN, "san", "", "certificates carrying this name")
		fs.StringVar(&q.Provisioner, "provisioner", "", "issued through this provisioner")
		fs.StringVar(&q.Property, "property", "", "with this token property (key=value)")
		fs.StringVar(&q.Status, "status", "", "valid, revoked or expired")
		fs.StringVar(&q.ExpiresAfter, "expires-after", "", "expiring at or after (RFC 3339)")
		fs.StringVar(&q.ExpiresBefore, "expires-before", "", "expiring before (RFC 3339)")
		fs.IntVar(&max, "max", 1000, "at most this many")
	}, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
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
	})(args)
}

var certGet = apiCommand("cert get", 1, nil, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
	cs, _, err := c.SearchCerts(cx, client.CertQuery{Serial: pos[0]})
	if err != nil {
		return nil, err
	}
	return &result{v: cs[0]}, nil
})

func certRevoke(args []string) int {
	var reason string
	return apiCommand("cert revoke", 1, func(fs *flag.FlagSet) {
		fs.StringVar(&reason, "reason", "", "RFC 5280 reason: keyCompromise, superseded, cessationOfOperation, ...")
	}, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
		got, err := c.RevokeCert(cx, pos[0], reason)
		if err != nil {
			return nil, err
		}
		return &result{got, certTable(*got)}, nil
	})(args)
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

var adminList = apiCommand("admin list", 0, nil, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
	as, err := c.Admins(cx)
	return &result{as, adminTable(as...)}, err
})

func adminCreate(args []string) int {
	var name, role, ttl, csrFile, certOut string
	return apiCommand("admin create", 0, func(fs *flag.FlagSet) {
		fs.StringVar(&name, "name", "", "admin name (required)")
		fs.StringVar(&role, "role", "", "admin, operator or auditor (required)")
		fs.StringVar(&ttl, "ttl", "", "lifetime of the credential")
		fs.StringVar(&csrFile, "csr", "", "a CSR (PEM file): issue a client certificate of the admin authority instead of a token")
		fs.StringVar(&certOut, "out", "", "with -csr: write the certificate chain here")
	}, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
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
	})(args)
}

var adminRevoke = apiCommand("admin revoke", 1, nil, func(cx context.Context, c *client.Client, pos []string) (*result, error) {
	return nil, c.RevokeAdmin(cx, pos[0])
})

var adminWhoami = apiCommand("admin whoami", 0, nil, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
	a, err := c.WhoAmI(cx)
	if err != nil {
		return nil, err
	}
	return &result{a, adminTable(*a)}, nil
})

func auditLine(w io.Writer, e client.AuditEntry) {
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, time.Unix(0, e.Time).UTC().Format(time.RFC3339), e.Command,
		e.Outcome, e.Actor, e.Remote, e.Note)
}

func auditList(args []string) int {
	fs := flag.NewFlagSet("audit list", flag.ContinueOnError)
	var q client.AuditQuery
	fs.Uint64Var(&q.After, "after", 0, "entries after this sequence number (with -follow: 0 streams new entries only)")
	fs.StringVar(&q.Command, "command", "", "only this command (issue, revoke, provisioner_put, ...)")
	fs.StringVar(&q.Actor, "actor", "", "only this actor")
	follow := fs.Bool("follow", false, "keep streaming new entries")
	var af apiFlags
	c, _, code, ok := parseWith(fs, &af, args, 0)
	if !ok {
		return code
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

// auditVerify checks the hash chain: of a state database in a data dir
// (a stopped node's, or a copy), or online, entry by entry from the API.
func auditVerify(args []string) int {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "verify the state database of this node data dir instead of asking the API")
	var af apiFlags
	af.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dataDir != "" {
		n, err := fsm.VerifyAuditFile(stateFile(*dataDir))
		if err != nil {
			return fail("audit verify: %v", err)
		}
		fmt.Printf("audit chain verified: %d entries\n", n)
		return 0
	}
	c, err := af.client()
	if err != nil {
		return fail("%v", err)
	}
	cx, cancel := ctx()
	defer cancel()
	var prev string
	var n uint64
	err = c.AuditAll(cx, client.AuditQuery{Limit: 1000}, func(e client.AuditEntry) error {
		if err := fsm.VerifyEntry(fsm.AuditEntry(e), n+1, prev); err != nil {
			return err
		}
		prev, n = e.Hash, n+1
		return nil
	})
	if err != nil {
		return fail("audit verify: %v", err)
	}
	fmt.Printf("audit chain verified: %d entries\n", n)
	return 0
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
func crlFetch(args []string) int {
	var name, outFile string
	return apiCommand("crl fetch", 0, func(fs *flag.FlagSet) {
		fs.StringVar(&name, "authority", "default", "authority name")
		fs.StringVar(&outFile, "out", "", "PEM file to write (required)")
	}, func(cx context.Context, c *client.Client, _ []string) (*result, error) {
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
	})(args)
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

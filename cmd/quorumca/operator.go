package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/quorumca/quorumca/client"
)

// runOperator dispatches "quorumca operator <group> <action>".
func runOperator(args []string) int {
	groups := map[string]map[string]func([]string) int{
		"authority": {
			"create": authorityCreate, "csr": authorityCSR, "import": authorityImport,
			"rotate": authorityRotate, "list": authorityList,
		},
	}
	if len(args) < 2 || groups[args[0]] == nil || groups[args[0]][args[1]] == nil {
		fmt.Fprintln(os.Stderr, `Usage: quorumca operator authority <create|csr|import|rotate|list> [flags]

  create   an authority whose root and issuing keys are in a KMS or HSM
  csr      a certificate request for an issuing key, for an offline root to sign
  import   install an intermediate signed by an offline root (new authority or new issuer)
  rotate   a new intermediate signed by the authority's root key
  list     the authorities and their issuers`)
		return 2
	}
	return groups[args[0]][args[1]](args[2:])
}

// apiFlags are the connection flags every client command takes, with
// QUORUMCA_* environment variables as defaults.
type apiFlags struct {
	addr, caFile, token, tokenFile, format string
}

func (f *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "", "API address, https://host:port (QUORUMCA_ADDR; default https://127.0.0.1:8443)")
	fs.StringVar(&f.caFile, "ca-file", "", "trust anchors of the API certificate (QUORUMCA_CA_FILE)")
	fs.StringVar(&f.token, "admin-token", "", "admin bearer token (QUORUMCA_ADMIN_TOKEN)")
	fs.StringVar(&f.tokenFile, "admin-token-file", "", "file holding the admin token (QUORUMCA_ADMIN_TOKEN_FILE)")
	fs.StringVar(&f.format, "format", "table", "output: table or json")
}

func (f *apiFlags) client() (*client.Client, error) {
	cfg := client.Config{Addr: f.addr, CAFile: f.caFile, AdminToken: f.token}
	if f.tokenFile != "" && cfg.AdminToken == "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, err
		}
		cfg.AdminToken = string(trimNL(b))
	}
	cfg, err := cfg.FromEnv()
	if err != nil {
		return nil, err
	}
	return client.New(cfg)
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// parse parses flags and builds the client; ok false means exit with code.
func parse(fs *flag.FlagSet, af *apiFlags, args []string) (*client.Client, int, bool) {
	af.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, 2, false
	}
	c, err := af.client()
	if err != nil {
		return nil, fail("%v", err), false
	}
	return c, 0, true
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

func authorityCreate(args []string) int {
	fs := flag.NewFlagSet("operator authority create", flag.ContinueOnError)
	var af apiFlags
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
	c, code, ok := parse(fs, &af, args)
	if !ok {
		return code
	}
	if req.Name == "" || req.RootKey == "" || req.Key == "" {
		return fail("authority create: -name, -root-key and -key are required")
	}
	cx, cancel := ctx()
	defer cancel()
	a, err := c.CreateAuthority(cx, req)
	if err != nil {
		return fail("authority create: %v", err)
	}
	return printAuthorities(os.Stdout, af.format, []client.Authority{*a})
}

func authorityCSR(args []string) int {
	fs := flag.NewFlagSet("operator authority csr", flag.ContinueOnError)
	var af apiFlags
	var key client.KeyOptions
	fs.StringVar(&key.Key, "key", "", "key URI of the new intermediate (required)")
	fs.BoolVar(&key.CreateKeys, "create-key", false, "create the key in its backend first")
	fs.StringVar(&key.KeyAlgorithm, "key-algorithm", "EC_P256", "for -create-key")
	cn := fs.String("cn", "", "intermediate common name")
	out := fs.String("out", "", "write the CSR here (default: standard output)")
	c, code, ok := parse(fs, &af, args)
	if !ok {
		return code
	}
	if key.Key == "" {
		return fail("authority csr: -key is required")
	}
	cx, cancel := ctx()
	defer cancel()
	csr, err := c.AuthorityCSR(cx, key, *cn)
	if err != nil {
		return fail("authority csr: %v", err)
	}
	if *out == "" {
		fmt.Print(csr.CSR)
	} else if err := os.WriteFile(*out, []byte(csr.CSR), 0o644); err != nil {
		return fail("authority csr: %v", err)
	}
	fmt.Fprintf(os.Stderr, "key: %s\nSign the request with the offline root, then run 'quorumca operator authority import'.\n", csr.Key)
	return 0
}

func authorityImport(args []string) int {
	fs := flag.NewFlagSet("operator authority import", flag.ContinueOnError)
	var af apiFlags
	var req client.ImportAuthority
	fs.StringVar(&req.Name, "name", "", "authority name (required)")
	rootFile := fs.String("root", "", "root certificate (PEM file, required)")
	certFile := fs.String("cert", "", "the signed intermediate, and any certificates between it and the root (PEM file, required)")
	fs.StringVar(&req.Key, "key", "", "key URI of the intermediate (required)")
	fs.StringVar(&req.BaseURL, "base-url", "", "plain-HTTP URL for CRL and OCSP (new authorities)")
	fs.BoolVar(&req.KeepOthers, "keep-others", false, "add beside the current issuers instead of replacing them")
	c, code, ok := parse(fs, &af, args)
	if !ok {
		return code
	}
	if req.Name == "" || *rootFile == "" || *certFile == "" || req.Key == "" {
		return fail("authority import: -name, -root, -cert and -key are required")
	}
	root, err := os.ReadFile(*rootFile)
	if err != nil {
		return fail("authority import: %v", err)
	}
	chain, err := os.ReadFile(*certFile)
	if err != nil {
		return fail("authority import: %v", err)
	}
	req.Root, req.Chain = string(root), string(chain)
	cx, cancel := ctx()
	defer cancel()
	a, err := c.ImportAuthority(cx, req)
	if err != nil {
		return fail("authority import: %v", err)
	}
	return printAuthorities(os.Stdout, af.format, []client.Authority{*a})
}

func authorityRotate(args []string) int {
	fs := flag.NewFlagSet("operator authority rotate", flag.ContinueOnError)
	var af apiFlags
	var req client.RotateAuthority
	name := fs.String("name", "", "authority name (required)")
	fs.StringVar(&req.Key, "key", "", "key URI of the new intermediate (required)")
	fs.BoolVar(&req.CreateKeys, "create-key", false, "create the key in its backend first")
	fs.StringVar(&req.KeyAlgorithm, "key-algorithm", "EC_P256", "for -create-key")
	fs.StringVar(&req.CommonName, "cn", "", "intermediate common name")
	fs.StringVar(&req.TTL, "ttl", "", "intermediate lifetime")
	fs.BoolVar(&req.KeepOthers, "keep-others", false, "share issuance with the current issuers instead of replacing them")
	c, code, ok := parse(fs, &af, args)
	if !ok {
		return code
	}
	if *name == "" || req.Key == "" {
		return fail("authority rotate: -name and -key are required")
	}
	cx, cancel := ctx()
	defer cancel()
	a, err := c.RotateAuthority(cx, *name, req)
	if err != nil {
		return fail("authority rotate: %v", err)
	}
	return printAuthorities(os.Stdout, af.format, []client.Authority{*a})
}

func authorityList(args []string) int {
	fs := flag.NewFlagSet("operator authority list", flag.ContinueOnError)
	var af apiFlags
	c, code, ok := parse(fs, &af, args)
	if !ok {
		return code
	}
	cx, cancel := ctx()
	defer cancel()
	as, err := c.Authorities(cx)
	if err != nil {
		return fail("authority list: %v", err)
	}
	return printAuthorities(os.Stdout, af.format, as)
}

func printAuthorities(w io.Writer, format string, as []client.Authority) int {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(as); err != nil {
			return fail("%v", err)
		}
		return 0
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AUTHORITY\tISSUER\tACTIVE\tNOT AFTER\tKEY")
	for _, a := range as {
		for _, iss := range a.Issuers {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", a.Name, iss.ID, iss.Active, iss.NotAfter.Format(time.DateOnly), iss.KeyURI)
		}
	}
	tw.Flush()
	return 0
}

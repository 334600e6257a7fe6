package authority

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/quorumca/quorumca/fsm"
)

// Lint sources left out, and why: they are the policies of publicly trusted
// CAs (CA/Browser Forum requirements, browser root programs, ETSI), which
// require certificate policy OIDs, a country in CA subjects, public IP
// addresses only, and so on. A private CA is held to the RFCs (5280, 5480,
// 5891, 6960, ...) and to zlint's community lints.
var publicPolicySources = lint.SourceList{
	lint.CABFBaselineRequirements, lint.CABFCSBaselineRequirements, lint.CABFSMIMEBaselineRequirements,
	lint.CABFEVGuidelines, lint.MozillaRootStorePolicy, lint.AppleRootStorePolicy,
	lint.ChromeRootStorePolicy, lint.EtsiEsi,
}

func lintResults(t *testing.T, der []byte, reg lint.Registry) (errs, warns []string) {
	t.Helper()
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range zlint.LintCertificateEx(c, reg).Results {
		switch r.Status {
		case lint.Error, lint.Fatal:
			errs = append(errs, name+" "+r.Details)
		case lint.Warn:
			warns = append(warns, name)
		}
	}
	return errs, warns
}

// Every kind of certificate the CA issues, and its own CA certificates,
// pass the private-CA lints with no error and no warning.
func TestCertificatesPassZlint(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	for _, p := range []fsm.Provisioner{
		{Name: "servers", Policy: fsm.Policy{DNS: []string{"*"}, IP: []string{"0.0.0.0/0"}, EKU: "server"}},
		{Name: "clients", Policy: fsm.Policy{DNS: []string{"*"}, URI: []string{"**"}, CommonName: []string{"device-*"}, EKU: "client"}},
	} {
		p.Kind, p.Authority = fsm.KindEnrollmentToken, DefaultAuthority
		if err := c.PutProvisioner(ctx, p, 0); err != nil {
			t.Fatal(err)
		}
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	// RFC 5280 wants a URI's host to be a fully qualified name, so the
	// trust domain here is one; "spiffe://prod/db" is issued too, but lints
	// as e_ext_san_uri_host_not_fqdn_or_ip.
	spiffe, _ := url.Parse("spiffe://prod.example.org/db")
	cases := []struct {
		name, prov string
		key        crypto.Signer
		csr        x509.CertificateRequest
		names      []string
	}{
		{"server ECDSA P-256", "servers", ecKey(t, elliptic.P256()), x509.CertificateRequest{DNSNames: []string{"web.example.com", "10.1.2.3"}}, []string{"web.example.com", "10.1.2.3"}},
		{"server RSA-2048", "servers", rsaKey, x509.CertificateRequest{DNSNames: []string{"rsa.example.com"}}, []string{"rsa.example.com"}},
		{"client Ed25519", "clients", edKey, x509.CertificateRequest{Subject: pkix.Name{CommonName: "device-42"}}, []string{"device-42"}},
		{"client SPIFFE", "clients", ecKey(t, elliptic.P384()), x509.CertificateRequest{URIs: []*url.URL{spiffe}}, []string{"spiffe://prod.example.org/db"}},
		{"both P-384", "default", ecKey(t, elliptic.P384()), x509.CertificateRequest{DNSNames: []string{"both.example.com"}}, []string{"both.example.com"}},
	}
	private, err := lint.GlobalRegistry().Filter(lint.FilterOptions{ExcludeSources: publicPolicySources})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, der []byte) {
		errs, warns := lintResults(t, der, private)
		if len(errs) > 0 || len(warns) > 0 {
			t.Errorf("%s: errors %v, warnings %v", what, errs, warns)
		}
	}
	var chain [][]byte
	for _, tc := range cases {
		m, err := c.MintToken(ctx, c.admin, TokenRequest{Provisioner: tc.prov, SANs: tc.names, TTL: time.Hour})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		iss, err := c.Sign(ctx, SignRequest{CSR: csrPEM(t, tc.key, &tc.csr), Token: m.Secret})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		check(tc.name, iss.Cert.DER)
		chain = iss.Chain
	}
	check("intermediate", chain[0])
	check("root", c.root.Raw)
}

// The CRL, with an entry that has a reason and one that has none, passes
// the private-CA CRL lints.
func TestCRLPassesZlint(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	for i, reason := range []string{"keyCompromise", ""} {
		name := []string{"a.example.com", "b.example.com"}[i]
		iss, err := c.signToken(ctx, csrPEM(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{DNSNames: []string{name}}), c.token(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Revoke(ctx, RevokeRequest{Serial: iss.Cert.Serial, Reason: reason, Admin: c.admin}); err != nil {
			t.Fatal(err)
		}
	}
	// What the leader does once per CRL interval.
	if err := c.RefreshStaleCRLs(ctx); err != nil {
		t.Fatal(err)
	}
	crl, err := c.CRL(ctx, DefaultAuthority, "", -1)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := zx509.ParseRevocationList(crl.DER)
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed.RevokedCertificates) != 2 {
		t.Fatalf("%d entries", len(parsed.RevokedCertificates))
	}
	private, _ := lint.GlobalRegistry().Filter(lint.FilterOptions{ExcludeSources: publicPolicySources})
	for name, r := range zlint.LintRevocationListEx(parsed, private).Results {
		if r.Status == lint.Error || r.Status == lint.Fatal || r.Status == lint.Warn {
			t.Errorf("CRL: %s %s %s", name, r.Status, r.Details)
		}
	}
}

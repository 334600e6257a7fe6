package authority

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"slices"
	"sort"
	"testing"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

// publicPolicySources are the policies of publicly trusted CAs (CA/Browser
// Forum, root programs). A private CA is held to the RFCs and to zlint's
// community lints; the CA/B Forum findings are pinned below so any change
// in them is noticed.
var publicPolicySources = lint.SourceList{
	lint.CABFBaselineRequirements, lint.CABFCSBaselineRequirements, lint.CABFSMIMEBaselineRequirements,
	lint.CABFEVGuidelines, lint.MozillaRootStorePolicy, lint.AppleRootStorePolicy,
	lint.ChromeRootStorePolicy, lint.EtsiEsi,
}

// knownBRFindings are the CA/B Forum lints our certificates fail, and why.
var knownBRFindings = map[string][]string{
	"leaf": {
		"e_ext_san_contains_reserved_ip",                          // private addresses are what a private CA certifies
		"e_sub_cert_aia_missing",                                  // no OCSP/CA-issuers URL until OCSP is served
		"e_sub_cert_cert_policy_empty",                            // no certificate policy OIDs: a private CA
		"e_sub_cert_certificate_policies_missing",                 // same
		"w_ext_subject_key_identifier_not_recommended_subscriber", // RFC 5280 recommends it
		"w_sub_cert_aia_does_not_contain_issuing_ca_url",          // as the first
		"w_subject_common_name_included",                          // devices still match on CN
	},
	"intermediate": {
		"e_ca_country_name_missing",                // the dev PKI has no country
		"e_invalid_ca_certificate_policies",        // no policy OIDs
		"e_sub_ca_certificate_policies_missing",    // same
		"e_sub_ca_crl_distribution_points_missing", // until CRLs are served
		"w_sub_ca_aia_missing",                     // same
	},
	"root": {"e_ca_country_name_missing"},
}

func lintFindings(t *testing.T, der []byte, reg lint.Registry) []string {
	t.Helper()
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for name, r := range zlint.LintCertificateEx(c, reg).Results {
		if r.Status == lint.Warn || r.Status == lint.Error || r.Status == lint.Fatal {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func TestCertificatesPassZlint(t *testing.T) {
	c := newTestCA(t)
	iss, err := c.signToken(context.Background(),
		csrPEM(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{DNSNames: []string{"z.example.com", "10.1.2.3"}}),
		c.token(t, "z.example.com", "10.1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	private, err := lint.GlobalRegistry().Filter(lint.FilterOptions{ExcludeSources: publicPolicySources})
	if err != nil {
		t.Fatal(err)
	}
	public, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: publicPolicySources})
	if err != nil {
		t.Fatal(err)
	}
	for kind, der := range map[string][]byte{"leaf": iss.Cert.DER, "intermediate": iss.Chain[0], "root": c.root.Raw} {
		if f := lintFindings(t, der, private); len(f) > 0 {
			t.Errorf("%s: RFC/community lints report %v", kind, f)
		}
		want := append([]string{}, knownBRFindings[kind]...)
		sort.Strings(want)
		if got := lintFindings(t, der, public); !slices.Equal(got, want) {
			t.Errorf("%s: CA/B Forum findings changed:\n got  %v\n want %v", kind, got, want)
		}
	}
}

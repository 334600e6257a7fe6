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
	"errors"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

func TestMatchers(t *testing.T) {
	dns := []struct {
		pat, name string
		want      bool
	}{
		{"*", "anything.example", true},
		{"a.example", "a.example", true},
		{"a.example", "b.example", false},
		{"*.example", "a.example", true},
		{"*.example", "a.b.example", false},
		{"*.example", "example", false},
		{".example", "a.b.example", true},
		{".example", "example", false},
		{".example", "badexample", false},
	}
	for _, tt := range dns {
		if got := matchDNS(tt.pat, tt.name); got != tt.want {
			t.Errorf("matchDNS(%q, %q) = %v", tt.pat, tt.name, got)
		}
	}
	globs := []struct {
		pat, s string
		want   bool
	}{
		{"spiffe://prod/*", "spiffe://prod/db", true},
		{"spiffe://prod/*", "spiffe://prod/db/replica", false},
		{"spiffe://prod/**", "spiffe://prod/db/replica", true},
		{"spiffe://prod/*/replica", "spiffe://prod/db/replica", true},
		{"**", "spiffe://x/y", true},
		{"spiffe://prod/db", "spiffe://prod/dbx", false},
	}
	for _, tt := range globs {
		if got := matchGlob(tt.pat, tt.s, '/'); got != tt.want {
			t.Errorf("matchGlob(%q, %q) = %v", tt.pat, tt.s, got)
		}
	}
	if !matchIP("10.0.0.0/8", net.ParseIP("10.1.2.3")) || matchIP("10.0.0.0/8", net.ParseIP("11.0.0.1")) ||
		!matchIP("10.0.0.0/8", net.ParseIP("::ffff:10.0.0.1")) {
		t.Error("matchIP")
	}
	if !matchEmail("@example.com", "ops@example.com") || matchEmail("@example.com", "ops@example.org") {
		t.Error("matchEmail")
	}
}

func TestCheckPolicyRefusesNonsense(t *testing.T) {
	for name, p := range map[string]fsm.Policy{
		"bad dns":      {DNS: []string{"*.*.example"}},
		"bad cidr":     {IP: []string{"10.0.0.0"}},
		"bad email":    {Email: []string{"example.com"}},
		"bad key type": {KeyTypes: []string{"DSA"}},
		"rsa min":      {RSAMinBits: 512},
		"bad eku":      {EKU: "code-signing"},
		"ttl order":    {DefaultTTL: 48 * time.Hour, MaxTTL: 24 * time.Hour},
		"globs":        {URI: []string{"*a*b*c*d*e"}},
	} {
		if err := CheckPolicy(&p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	d := DefaultPolicy()
	if err := CheckPolicy(&d); err != nil {
		t.Errorf("default policy: %v", err)
	}
}

// A provisioner's policy decides names, keys, lifetime and usage.
func TestProvisionerPolicy(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	pol := fsm.Policy{
		DNS: []string{".devices.example"}, IP: []string{"10.0.0.0/8"}, URI: []string{"spiffe://prod/*"},
		CommonName: []string{"device-*"}, DefaultTTL: 2 * time.Hour, MaxTTL: 4 * time.Hour,
		KeyTypes: []string{KeyP256, KeyRSA}, RSAMinBits: 3072, EKU: "client",
	}
	if err := c.PutProvisioner(ctx, fsm.Provisioner{Name: "devices", Kind: fsm.KindEnrollmentToken, Authority: DefaultAuthority, Policy: pol}, 0); err != nil {
		t.Fatal(err)
	}
	mint := func(names ...string) (string, error) {
		m, err := c.MintToken(ctx, c.admin, TokenRequest{Provisioner: "devices", SANs: names, TTL: time.Hour})
		if err != nil {
			return "", err
		}
		return m.Secret, nil
	}
	// Minting already applies the policy.
	if _, err := mint("laptop.corp.example"); !errors.Is(err, fsm.ErrNameNotAllowed) {
		t.Errorf("mint outside policy: %v", err)
	}
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	spiffe, _ := url.Parse("spiffe://prod/sensor")
	tests := []struct {
		name string
		key  crypto.Signer
		csr  x509.CertificateRequest
		ttl  time.Duration
		want error
	}{
		{"allowed", ecKey(t, elliptic.P256()), x509.CertificateRequest{Subject: pkix.Name{CommonName: "device-7"},
			DNSNames: []string{"d7.devices.example"}, IPAddresses: []net.IP{net.ParseIP("10.1.1.7")}, URIs: []*url.URL{spiffe}}, 0, nil},
		{"cn outside", ecKey(t, elliptic.P256()), x509.CertificateRequest{Subject: pkix.Name{CommonName: "laptop"},
			DNSNames: []string{"d7.devices.example"}}, 0, fsm.ErrNameNotAllowed}, // refused when the token is minted
		{"ed25519 not allowed", ed, x509.CertificateRequest{DNSNames: []string{"d7.devices.example"}}, 0, ErrKeyTypeNotAllowed},
		{"rsa below policy", rsa2048, x509.CertificateRequest{DNSNames: []string{"d7.devices.example"}}, 0, ErrKeyTooWeak},
		{"p-384 not allowed", ecKey(t, elliptic.P384()), x509.CertificateRequest{DNSNames: []string{"d7.devices.example"}}, 0, ErrKeyTypeNotAllowed},
		{"ttl above max", ecKey(t, elliptic.P256()), x509.CertificateRequest{DNSNames: []string{"d7.devices.example"}}, 5 * time.Hour, ErrTTLNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var names []string
			names = append(names, tt.csr.DNSNames...)
			for _, ip := range tt.csr.IPAddresses {
				names = append(names, ip.String())
			}
			for _, u := range tt.csr.URIs {
				names = append(names, u.String())
			}
			if tt.csr.Subject.CommonName != "" {
				names = append(names, tt.csr.Subject.CommonName)
			}
			tok, err := mint(names...)
			if err != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("mint: %v", err)
				}
				return
			}
			iss, err := c.Sign(ctx, SignRequest{CSR: csrPEM(t, tt.key, &tt.csr), Token: tok, TTL: tt.ttl})
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			leaf, _ := x509.ParseCertificate(iss.Cert.DER)
			if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
				t.Errorf("EKU %v, want client only", leaf.ExtKeyUsage)
			}
			if life := leaf.NotAfter.Sub(leaf.NotBefore) - backdate; life != 2*time.Hour {
				t.Errorf("lifetime %s, want the provisioner default", life)
			}
			if leaf.Subject.CommonName != "device-7" || len(leaf.DNSNames) != 1 {
				t.Errorf("subject %s names %v", leaf.Subject, leaf.DNSNames)
			}
		})
	}
}

func TestCommonNameRule(t *testing.T) {
	withPatterns := &fsm.Policy{DNS: []string{"*"}, CommonName: []string{"device-*"}}
	bare := &fsm.Policy{DNS: []string{"*"}}
	for _, tt := range []struct {
		p    *fsm.Policy
		cn   string
		want error
	}{
		{bare, "a.example", nil},            // also a SAN
		{bare, "device-1", ErrCNNotAllowed}, // not a SAN, no pattern
		{withPatterns, "device-1", nil},
		{withPatterns, "laptop", ErrCNNotAllowed},
	} {
		n, err := collectNames(tt.cn, []string{"a.example"}, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkNames(tt.p, n); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("CN %q: %v, want %v", tt.cn, err, tt.want)
		}
	}
}

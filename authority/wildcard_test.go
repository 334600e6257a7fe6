package authority

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/quorumca/quorumca/fsm"
)

// A policy that allows names under a domain does not allow a wildcard
// certificate for it.
func TestWildcardNeedsPolicy(t *testing.T) {
	for _, pat := range []string{"*.svc.example", ".svc.example", "*"} {
		n, err := collectNames("", []string{"*.svc.example"}, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkNames(&fsm.Policy{DNS: []string{pat}}, n); !errors.Is(err, fsm.ErrNameNotAllowed) {
			t.Errorf("policy %q allows the literal name *.svc.example: %v", pat, err)
		}
		if err := checkTokenNames(&fsm.Policy{DNS: []string{pat}, CommonName: []string{"*"}}, []string{"*.svc.example"}); !errors.Is(err, fsm.ErrNameNotAllowed) {
			t.Errorf("policy %q allows a token for *.svc.example: %v", pat, err)
		}
	}
	// A common name that reads as a wildcard is one too.
	n, err := collectNames("*.local", nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkNames(&fsm.Policy{DNS: []string{"*"}, CommonName: []string{"*"}}, n); err == nil {
		t.Error("common name *.local allowed without allow_wildcard")
	}
}

// The holder of a jwk provisioner's key limited to *.svc.example cannot
// get a wildcard certificate, whether the CSR names it as a SAN or as its
// common name; an admin cannot mint an enrollment token for one.
func TestWildcardThroughTokens(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	key := ecKey(t, elliptic.P256())
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: key.Public()})
	pol := DefaultPolicy()
	pol.DNS = []string{"*.svc.example"}
	if err := c.PutProvisioner(ctx, fsm.Provisioner{Name: "auto", Kind: fsm.KindJWK, Authority: DefaultAuthority, Policy: pol, JWK: jwk}, 0); err != nil {
		t.Fatal(err)
	}
	pol.DNS = []string{".svc.example"}
	if err := c.PutProvisioner(ctx, fsm.Provisioner{Name: "fleet", Kind: fsm.KindEnrollmentToken, Authority: DefaultAuthority, Policy: pol}, 0); err != nil {
		t.Fatal(err)
	}
	aud := "https://ca.example/v1/sign"
	jwt := func(jti string) string {
		tok, err := SignJWT(key, "", nil, map[string]any{"iss": "auto", "aud": aud, "jti": jti, "sans": []string{"*.svc.example"},
			"exp": time.Now().Add(time.Minute).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for name, csr := range map[string]*x509.CertificateRequest{
		"SAN":         {DNSNames: []string{"*.svc.example"}},
		"common name": {Subject: pkix.Name{CommonName: "*.svc.example"}},
	} {
		_, err := c.Sign(ctx, SignRequest{CSR: csrPEM(t, ecKey(t, elliptic.P256()), csr), Token: jwt(name), Audiences: []string{aud}})
		if !errors.Is(err, fsm.ErrNameNotAllowed) {
			t.Errorf("jwk token and CSR %s for *.svc.example: %v", name, err)
		}
	}
	if _, err := c.MintToken(ctx, c.admin, TokenRequest{Provisioner: "fleet", SANs: []string{"*.svc.example"}}); !errors.Is(err, fsm.ErrNameNotAllowed) {
		t.Errorf("enrollment token for *.svc.example under .svc.example: %v", err)
	}
}

// With allow_wildcard, a wildcard name is allowed where the DNS patterns
// cover every name it stands for.
func TestAllowWildcard(t *testing.T) {
	for _, tt := range []struct {
		pat, name string
		want      bool
	}{
		{"*.svc.example", "*.svc.example", true},
		{".svc.example", "*.svc.example", true},
		{".svc.example", "*.a.svc.example", true},
		{"*", "*.svc.example", true},
		{"*.svc.example", "*.a.svc.example", false},
		{"a.svc.example", "*.svc.example", false},
	} {
		n, err := collectNames("", []string{tt.name}, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = checkNames(&fsm.Policy{DNS: []string{tt.pat}, AllowWildcard: true}, n)
		if (err == nil) != tt.want {
			t.Errorf("allow_wildcard, dns %q, name %s: %v", tt.pat, tt.name, err)
		}
	}
	n, _ := collectNames("*.local", nil, nil, nil, nil)
	if err := checkNames(&fsm.Policy{CommonName: []string{"*"}, AllowWildcard: true}, n); err != nil {
		t.Errorf("common name *.local with allow_wildcard: %v", err)
	}

	c := newTestCA(t)
	ctx := context.Background()
	pol := DefaultPolicy()
	pol.DNS, pol.AllowWildcard = []string{"*.svc.example"}, true
	if err := c.PutProvisioner(ctx, fsm.Provisioner{Name: "wild", Kind: fsm.KindEnrollmentToken, Authority: DefaultAuthority, Policy: pol}, 0); err != nil {
		t.Fatal(err)
	}
	m, err := c.MintToken(ctx, c.admin, TokenRequest{Provisioner: "wild", SANs: []string{"*.svc.example"}})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := c.signToken(ctx, csrPEM(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{DNSNames: []string{"*.svc.example"}}), m.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if leaf, _ := x509.ParseCertificate(iss.Cert.DER); leaf.DNSNames[0] != "*.svc.example" {
		t.Errorf("names %v", leaf.DNSNames)
	}
}

package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/ocsp"
	"golang.org/x/time/rate"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// FuzzParseCSR: any input is either refused as a bad CSR (or, if it parses,
// for its key type: a request whose key algorithm x509 does not know has
// none) or yields names in canonical form.
func FuzzParseCSR(f *testing.F) {
	k := ecKey(f, elliptic.P256())
	f.Add(csrPEM(f, k, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "a.example"}, DNSNames: []string{"b.example"}}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := ParseCSR(b)
		if err != nil {
			if !errors.Is(err, ErrBadCSR) && !errors.Is(err, ErrKeyTypeNotAllowed) {
				t.Fatalf("error not marked as a bad CSR or a refused key type: %v", err)
			}
			return
		}
		names, err := csrNames(csr)
		if err != nil {
			if !errors.Is(err, ErrBadCSR) {
				t.Fatalf("error not marked as a bad CSR: %v", err)
			}
			return
		}
		for _, n := range names.all {
			if c, err := normalizeName(n); err != nil || c != n {
				t.Fatalf("name %q not canonical: %q %v", n, c, err)
			}
		}
	})
}

// FuzzNormalizeName: canonical forms are fixed points.
func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"Example.COM.", "*.a.b", "10.0.0.1", "::1", "spiffe://x/y", "a@b.c", "xn--bcher-kva.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := normalizeName(s)
		if err != nil {
			return
		}
		if c2, err := normalizeName(c); err != nil || c2 != c {
			t.Fatalf("%q -> %q -> %q, %v", s, c, c2, err)
		}
	})
}

// FuzzURIPolicy: the URI matcher's decision equals one built from what
// net/url parses out of the name; above all, no URI whose parsed host is
// outside the pattern's host set is ever allowed.
func FuzzURIPolicy(f *testing.F) {
	for _, s := range []string{
		"https://a.svc.example/x", "https://evil.com?.svc.example/", "https://evil.com#.svc.example/x",
		"https://evil.com:1@a.svc.example/x", "https://a.svc.example/x?admin=1", "https://A.svc.example:443/x",
		"https://a.svc.example/x/%2e%2e/y", "spiffe://prod/devices/a", "spiffe://prod/devices/a/b",
		"spiffe://evil.com?.prod/devices/a", "spiffe://prod/devices/%2e%2e", "https://a.example:8443/x?q=1",
		"https://[::1]/x", "https://xn--bcher-kva.svc.example/", "https://a.svc.example%2f/x",
	} {
		f.Add(s)
	}
	ldhLabel := func(l string) bool {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		return !strings.ContainsFunc(l, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		})
	}
	noDots := func(path string) bool {
		for _, seg := range strings.Split(path, "/") {
			if seg == "." || seg == ".." {
				return false
			}
		}
		return true
	}
	bare := func(u *url.URL) bool { // no part a pattern must name
		return u.Opaque == "" && u.User == nil && u.RawQuery == "" && !u.ForceQuery && u.Fragment == ""
	}
	patterns := []struct {
		pat    string
		decide func(u *url.URL) bool
	}{
		{"https://*.svc.example/**", func(u *url.URL) bool {
			label, ok := strings.CutSuffix(strings.ToLower(u.Hostname()), ".svc.example")
			return u.Scheme == "https" && bare(u) && u.Port() == "" && ok && ldhLabel(label) &&
				strings.HasPrefix(u.Path, "/") && noDots(u.Path)
		}},
		{"spiffe://prod/devices/*", func(u *url.URL) bool {
			seg, ok := strings.CutPrefix(u.Path, "/devices/")
			return u.Scheme == "spiffe" && bare(u) && u.Host == "prod" && u.RawPath == "" && ok &&
				seg != "" && seg != "." && seg != ".." && !strings.ContainsFunc(seg, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_')
			})
		}},
		{"https://a.example:*/x?*", func(u *url.URL) bool {
			return u.Scheme == "https" && u.Opaque == "" && u.User == nil && u.Fragment == "" &&
				strings.ToLower(u.Hostname()) == "a.example" && u.Path == "/x"
		}},
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := normalizeName(s)
		if err != nil || !strings.Contains(c, "://") {
			return
		}
		u, err := url.Parse(c)
		if err != nil {
			t.Fatalf("canonical name %q does not parse: %v", c, err)
		}
		for _, p := range patterns {
			got, want := matchURI(p.pat, u), p.decide(u)
			if got != want {
				t.Fatalf("%s allows %q (host %q): %v, net/url says %v", p.pat, c, u.Hostname(), got, want)
			}
		}
	})
}

// FuzzNormalizeSerial: accepted serials are canonical and round-trip.
func FuzzNormalizeSerial(f *testing.F) {
	for _, s := range []string{"00ab", "0a:bc", "ffffffffffffffffffffffffffffffffffffffff", "-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := NormalizeSerial(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("unmarked error %v", err)
			}
			return
		}
		if c2, err := NormalizeSerial(c); err != nil || c2 != c {
			t.Fatalf("%q -> %q -> %q", s, c, c2)
		}
	})
}

// isRejection reports whether err is a coded refusal of the request (a 4xx
// for the API).
func isRejection(err error) bool {
	e := errs.Of(err)
	return e != nil && e.Kind != errs.Internal && e.Kind != errs.Unavailable && e.Kind != errs.RateLimited
}

// FuzzOneTimeTokens: any string presented as a jwk enrollment token or a
// renewal token is refused with a coded error, never a panic.
func FuzzOneTimeTokens(f *testing.F) {
	c := newTestCA(f)
	key := ecKey(f, elliptic.P256())
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: key.Public()})
	if err := c.PutProvisioner(context.Background(), fsm.Provisioner{Name: "auto", Kind: fsm.KindJWK, Authority: DefaultAuthority,
		Policy: DefaultPolicy(), JWK: jwk}, 0); err != nil {
		f.Fatal(err)
	}
	good, _ := SignJWT(key, "", nil, map[string]any{"iss": "auto", "aud": "https://ca/v1/sign", "jti": "1", "sans": []string{"a.example"},
		"exp": time.Now().Add(time.Minute).Unix()})
	f.Add(good)
	f.Add("e30.e30.e30")
	f.Add("a.b.c")
	f.Add(`eyJhbGciOiJFUzI1NiIsIng1YyI6WyJBQUFBIl19.e30.AAAA`)
	f.Fuzz(func(t *testing.T, tok string) {
		if _, _, err := c.verifyProvisionerJWT(context.Background(), tok, []string{"https://ca/v1/sign"}); err != nil && !isRejection(err) {
			t.Fatalf("jwk token %q: uncoded error %v", tok, err)
		}
		if _, _, err := c.verifyRenewalJWS(tok, []string{"https://ca/v1/renew"}); err != nil && !isRejection(err) {
			t.Fatalf("renewal token %q: uncoded error %v", tok, err)
		}
	})
}

// FuzzOCSPRequest: any request body gets a parseable OCSP response or an
// invalid-request error. The parser reads every request x/crypto/ocsp
// reads (but for a bad nonce, malformed), with the same first entry, and
// the response answers every entry, in order, signed by the issuer,
// echoing the nonce.
func FuzzOCSPRequest(f *testing.F) {
	c := newTestCA(f)
	iss, err := c.signToken(context.Background(), csrPEM(f, ecKey(f, elliptic.P256()), &x509.CertificateRequest{DNSNames: []string{"o.example"}}), c.token(f, "o.example"))
	if err != nil {
		f.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(iss.Cert.DER)
	issuer, _ := x509.ParseCertificate(iss.Chain[0])
	req, _ := ocsp.CreateRequest(leaf, issuer, nil)
	f.Add(req)
	f.Add([]byte{0x30, 0x00})
	f.Add(ocspMultiRequest(f, issuer, crypto.SHA256, leaf.SerialNumber, new(big.Int).Add(leaf.SerialNumber, big.NewInt(1)), leaf.SerialNumber))
	f.Add(ocspMultiRequest(f, issuer, crypto.SHA256, leaf.SerialNumber, new(big.Int).Add(leaf.SerialNumber, big.NewInt(1))))
	f.Add(withNonce(f, req, nonceValue(f, 16)))
	f.Add(withNonce(f, req, nonceValue(f, 33)))
	c.ocspFreshSigs = rate.NewLimiter(rate.Inf, 1) // the parser and the answers are fuzzed, not the node's budget
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, nonce, perr := parseOCSPRequest(b)
		if x, err := ocsp.ParseRequest(b); err == nil && x.SerialNumber != nil && x.SerialNumber.Sign() > 0 && x.HashAlgorithm.Available() {
			switch {
			case errors.Is(perr, ErrOCSPMalformed):
			case perr != nil:
				// Only for a later entry, which x/crypto/ocsp never checked.
				var r ocspRequestASN1
				if _, err := asn1.Unmarshal(b, &r); err != nil || len(r.TBSRequest.RequestList) < 2 {
					t.Fatalf("x/crypto/ocsp reads the request, parseOCSPRequest: %v", perr)
				}
			case entries[0].req.HashAlgorithm != x.HashAlgorithm || entries[0].req.SerialNumber.Cmp(x.SerialNumber) != 0 ||
				!bytes.Equal(entries[0].req.IssuerNameHash, x.IssuerNameHash) || !bytes.Equal(entries[0].req.IssuerKeyHash, x.IssuerKeyHash):
				t.Fatalf("first entry %+v, x/crypto/ocsp read %+v", entries[0].req, x)
			}
		}
		resp, _, err := c.OCSP(context.Background(), b)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("uncoded error %v", err)
			}
			return
		}
		if bytes.Equal(resp, ocsp.UnauthorizedErrorResponse) {
			return
		}
		if perr != nil {
			t.Fatalf("answered a request the parser refuses: %v", perr)
		}
		if info, ok := ReadOCSPResponse(resp); !ok || nonce != nil && !bytes.Equal(info.Nonce, nonce.Value) {
			t.Fatalf("answer's times and nonce: %v %+v, asked with %+v", ok, info, nonce)
		}
		serials := ocspSerials(t, resp)
		if len(serials) != len(entries) {
			t.Fatalf("%d certificates asked about, %d answered", len(entries), len(serials))
		}
		for i, e := range entries {
			if serials[i].Cmp(e.req.SerialNumber) != 0 {
				t.Fatalf("answer %d is for %x, asked %x", i, serials[i], e.req.SerialNumber)
			}
			if _, err := ocsp.ParseResponseForCert(resp, &x509.Certificate{SerialNumber: e.req.SerialNumber}, issuer); err != nil {
				t.Fatalf("answer %d: %v", i, err)
			}
		}
	})
}

// FuzzFactoryNames: whatever a factory certificate names as its device
// ID, a filled name template has the template's separators and no others:
// an ID never adds a label, a path, a user, a query or a wildcard.
func FuzzFactoryNames(f *testing.F) {
	for _, s := range [][2]string{{"{serial}.devices.example", "SN1"}, {"spiffe://d.example/{cn}", "a:b"},
		{"{id}.example", "SN.1"}, {"{serial}", "::ffff:a00:1"}, {"{id}@d.example", "*"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, tmpl, id string) {
		n, err := expandName(tmpl, id)
		if err != nil {
			return
		}
		for _, sep := range []string{".", "/", "*", "@", "?", "#", "%", " "} {
			if strings.Count(n, sep) != strings.Count(tmpl, sep) {
				t.Fatalf("%q with ID %q -> %q: %q added", tmpl, id, n, sep)
			}
		}
	})
}

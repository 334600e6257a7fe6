package authority

import (
	"net/url"
	"testing"

	"github.com/quorumca/quorumca/fsm"
)

// uriAllowed reports whether a policy with these URI patterns lets a
// certificate carry the URI.
func uriAllowed(t *testing.T, pats []string, uri string) bool {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatalf("%q: %v", uri, err)
	}
	n, err := collectNames("", nil, nil, []*url.URL{u}, nil)
	if err != nil {
		return false // not even a name
	}
	return checkNames(&fsm.Policy{URI: pats}, n) == nil
}

// URI patterns are matched on the parsed parts of a URI, not as a glob over
// its text: a pattern's host part constrains the host a relying party sees.
func TestURIPolicyRefusesOtherHosts(t *testing.T) {
	svc := []string{"https://*.svc.example/**"}
	trust := []string{"spiffe://*.prod.example/**"}
	devices := []string{"spiffe://prod/devices/*"}
	for _, tt := range []struct {
		pats []string
		uri  string
	}{
		{svc, "https://evil.com?.svc.example/"},
		{svc, "https://evil.com#.svc.example/x"},
		{svc, "https://evil.com:1@a.svc.example/x"}, // user info
		{svc, "https://a.svc.example/x?admin=1"},    // a query
		{svc, "https://a.svc.example/x#frag"},       // a fragment
		{svc, "https://a.svc.example:8443/x"},       // a port the pattern does not name
		{svc, "https://a.svc.example/x/%2e%2e/y"},   // a dot segment, escaped
		{trust, "spiffe://evil.com?.prod.example/x"},
		{trust, "spiffe://evil.com#.prod.example/x"},
		{trust, "spiffe://evil.com:1@a.prod.example/x"},
		{trust, "spiffe://a.prod.example:443/x"},
		{devices, "spiffe://prod/devices/x?y"},
		{devices, "spiffe://prod/devices/x#y"},
		{devices, "spiffe://prod/devices/.."},
	} {
		if uriAllowed(t, tt.pats, tt.uri) {
			t.Errorf("%v allows %s (host %q)", tt.pats, tt.uri, mustHost(tt.uri))
		}
	}
}

func mustHost(s string) string {
	u, _ := url.Parse(s)
	return u.Hostname()
}

// What worked for well-formed names still does.
func TestURIPolicyMatchesParts(t *testing.T) {
	for _, tt := range []struct {
		pat, uri string
		want     bool
	}{
		{"spiffe://prod/devices/*", "spiffe://prod/devices/a", true},
		{"spiffe://prod/devices/*", "spiffe://prod/devices/a/b", false},
		{"spiffe://prod/devices/*", "spiffe://prod/devices/", false}, // not a SPIFFE ID
		{"spiffe://prod/devices/*", "spiffe://Prod/devices/a", false},
		{"spiffe://prod/devices/*", "spiffe://prod/devices/a%2Fb", false},
		{"spiffe://prod/devices/*", "spiffe://other/devices/a", false},
		{"spiffe://prod/**", "spiffe://prod/devices/a/b", true},
		{"spiffe://prod/*/replica", "spiffe://prod/db/replica", true},
		{"spiffe://prod/db", "spiffe://prod/dbx", false},
		{"spiffe://**.example.org/**", "spiffe://a.b.example.org/x", true},
		{"**", "https://anything.example/x?q#f", true},
		{"https://*.svc.example/**", "https://a.svc.example/x/y", true},
		{"https://*.svc.example/**", "https://A.SVC.example/x", true},
		{"https://*.svc.example/**", "https://a.b.svc.example/x", false},
		{"https://*.svc.example/**", "https://*.svc.example/x", false},
		{"https://.svc.example/**", "https://a.b.svc.example/x", true},
		{"https://**.svc.example/**", "https://a.b.svc.example/x", true},
		{"https://**.svc.example/**", "https://svc.example/x", false},
		{"https://a.example:*/x", "https://a.example:8443/x", true},
		{"https://a.example:8443/x", "https://a.example:8443/x", true},
		{"https://a.example:8443/x", "https://a.example:9443/x", false},
		{"https://a.example:8443/x", "https://a.example/x", false},
		{"https://a.example/x?*", "https://a.example/x?y=1", true},
		{"https://a.example/x?y=*", "https://a.example/x?z=1", false},
		{"https://a.example/x#*", "https://a.example/x#f", true},
		{"https://*@a.example/x", "https://bob@a.example/x", true},
		{"https://10.0.0.1/x", "https://10.0.0.1/x", true},
		{"https://10.0.0.1/x", "https://10.0.0.2/x", false},
		{"https://*/x", "https://[::1]/x", true},
		{"https://*/x", "https://a.example./x", false}, // not a host name in canonical form
	} {
		if got := uriAllowed(t, []string{tt.pat}, tt.uri); got != tt.want {
			t.Errorf("%s allows %s: %v, want %v", tt.pat, tt.uri, got, tt.want)
		}
	}
}

// Patterns that cannot be matched part by part are refused when a
// provisioner is written.
func TestCheckPolicyURIPatterns(t *testing.T) {
	for _, pat := range []string{
		"spiffe://prod/x?y", "spiffe://prod:1/x", "spiffe://u@prod/x", "spiffe://prod/x#f", "spiffe://10.0.0.1/x",
		"https://evil.com*/x", "https://a.*.example/x", "https://*.*.example/x", "https://a b.example/",
		"*://x/y", "no-scheme/x", "https:/x", "https://a.example:http/x", "https://a.example:0/x",
		"https://a.example/../x", "https://a.example/./x", "https://[::1/x", "https://a.example/%zz",
		"https://a.example/%2A%2A/%2A/%2A/%2A", "*", "https://*.svc.example*/**",
	} {
		if err := CheckPolicy(&fsm.Policy{URI: []string{pat}}); err == nil {
			t.Errorf("pattern %q accepted", pat)
		}
	}
	for _, pat := range []string{"**", "spiffe://prod/devices/*", "https://*.svc.example/**", "https://a.example:*/x?*#*",
		"https://[2001:db8::1]:8443/x", "urn+x://a.example", "https://*@a.example/**"} {
		if err := CheckPolicy(&fsm.Policy{URI: []string{pat}}); err != nil {
			t.Errorf("pattern %q: %v", pat, err)
		}
	}
}

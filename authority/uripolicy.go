package authority

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// URI name patterns are matched on a URI's parsed parts, as a relying party
// sees them, never as text: a glob over the whole string let
// "https://evil.com?.svc.example/" through "https://*.svc.example/**".
//
// A pattern is "**" (any URI) or scheme://[userinfo@]host[:port][path][?query][#fragment]:
//   - host follows the dns rules: "*" (any), a name, "*.d" (one label under
//     d), ".d" or "**.d" (any depth under d), or an IP address;
//   - port: none (the URI may not name one), "*" (any) or a number;
//   - path: "*" matches within a segment, "**" across segments; compared
//     with the URI's decoded path, which must have no "." or ".." segment;
//   - user info, query and fragment: the URI may carry one only if the
//     pattern names it (as a glob, "*" matching anything).
//
// spiffe:// patterns take SPIFFE IDs only: a lowercase trust domain, no
// port, user info, query or fragment, and path segments of letters,
// digits, '.', '-' and '_'.

type uriPattern struct {
	any             bool
	scheme          string
	user            string
	hasUser         bool
	host            string // lowercase; "*", a name, "*.d", ".d", or an IP
	ip              netip.Addr
	port            string // "", "*" or digits
	path            string // decoded
	query, fragment string
	hasQuery        bool
	hasFragment     bool
}

// parseURIPattern splits a pattern into its parts, refusing what cannot be
// matched part by part.
func parseURIPattern(s string) (*uriPattern, error) {
	if s == "**" {
		return &uriPattern{any: true}, nil
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || !validScheme(scheme) {
		return nil, errors.New(`want "**" or scheme://host[:port][/path]`)
	}
	p := &uriPattern{scheme: strings.ToLower(scheme)}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		p.fragment, p.hasFragment, rest = rest[i+1:], true, rest[:i]
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		p.query, p.hasQuery, rest = rest[i+1:], true, rest[:i]
	}
	auth, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		auth, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		p.user, p.hasUser, auth = auth[:i], true, auth[i+1:]
	}
	host := auth
	if strings.HasPrefix(auth, "[") {
		end := strings.IndexByte(auth, ']')
		if end < 0 {
			return nil, errors.New("host: unclosed [")
		}
		host, auth = auth[1:end], auth[end+1:]
		if auth != "" && auth[0] != ':' {
			return nil, errors.New("host: junk after ]")
		}
		if auth != "" {
			p.port = auth[1:]
		}
	} else if i := strings.LastIndexByte(auth, ':'); i >= 0 {
		host, p.port = auth[:i], auth[i+1:]
	}
	if err := p.setHost(host); err != nil {
		return nil, err
	}
	if p.port != "" && p.port != "*" {
		if n, err := strconv.Atoi(p.port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q: want a number or *", p.port)
		}
	}
	var err error
	if p.path, err = url.PathUnescape(path); err != nil {
		return nil, fmt.Errorf("path: %v", err)
	}
	// Globs backtrack; a bounded number of wildcards bounds the cost (an
	// escaped "*" in the path counts too).
	if strings.Count(p.user+p.host+p.path+p.query+p.fragment, "*") > 4 {
		return nil, errors.New("at most 4 wildcards")
	}
	if dotSegment(p.path) {
		return nil, errors.New(`path: no "." or ".." segments`)
	}
	if p.scheme == "spiffe" && (p.hasUser || p.port != "" || p.hasQuery || p.hasFragment || p.ip.IsValid()) {
		return nil, errors.New("a SPIFFE ID has a trust domain and a path only")
	}
	return p, nil
}

func (p *uriPattern) setHost(h string) error {
	h = strings.ToLower(h)
	if a, err := netip.ParseAddr(h); err == nil && a.Zone() == "" {
		p.host, p.ip = h, a.Unmap()
		return nil
	}
	if rest, ok := strings.CutPrefix(h, "**."); ok {
		h = "." + rest
	}
	if h != "*" && !validDNSPattern(h) {
		return fmt.Errorf(`host %q: want "*", a name, "*.domain", ".domain" or an IP address`, truncate(h))
	}
	p.host = h
	return nil
}

// validDNSPattern: a name, "*.d" or ".d", with no other wildcard.
func validDNSPattern(d string) bool {
	rest := strings.TrimPrefix(strings.TrimPrefix(d, "*."), ".")
	return !strings.Contains(rest, "*") && validDNSName(rest)
}

func validScheme(s string) bool {
	if s == "" || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLetter(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// dotSegment reports whether a path has a "." or ".." segment, which a
// relying party may resolve to a path the pattern does not allow.
func dotSegment(path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// matchURI reports whether pattern allows u. A pattern that does not parse
// (one stored before patterns were checked part by part) allows nothing.
func matchURI(pattern string, u *url.URL) bool {
	p, err := parseURIPattern(pattern)
	return err == nil && p.match(u)
}

func (p *uriPattern) match(u *url.URL) bool {
	if p.any {
		return true
	}
	if u.Opaque != "" || u.Scheme != p.scheme {
		return false
	}
	if p.scheme == "spiffe" && !validSPIFFEID(u) {
		return false
	}
	if !p.matchHost(strings.ToLower(u.Hostname())) || !p.matchPort(u.Port()) {
		return false
	}
	if dotSegment(u.Path) || !matchGlob(p.path, u.Path, '/') {
		return false
	}
	user := ""
	if u.User != nil {
		user = u.User.String()
	}
	return optionalPart(p.hasUser, p.user, user, u.User != nil) &&
		optionalPart(p.hasQuery, p.query, u.RawQuery, u.RawQuery != "" || u.ForceQuery) &&
		optionalPart(p.hasFragment, p.fragment, u.EscapedFragment(), u.Fragment != "")
}

// optionalPart: a part the pattern does not name must be absent.
func optionalPart(named bool, pat, s string, present bool) bool {
	if !named {
		return !present
	}
	return matchGlob(pat, s, 0)
}

func (p *uriPattern) matchHost(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Zone() == "" && (p.host == "*" || p.ip.IsValid() && p.ip == a.Unmap())
	}
	if p.ip.IsValid() || strings.Contains(h, "*") || !validDNSName(h) {
		return false
	}
	return matchDNS(p.host, h)
}

func (p *uriPattern) matchPort(port string) bool {
	switch p.port {
	case "*":
		return true
	case "":
		return port == ""
	}
	a, err1 := strconv.Atoi(p.port)
	b, err2 := strconv.Atoi(port)
	return err1 == nil && err2 == nil && a == b
}

// validSPIFFEID applies the SPIFFE ID rules (spiffe/standards SPIFFE-ID.md):
// a lowercase trust domain, no port or user info, no query or fragment, and
// a path of non-empty segments of [A-Za-z0-9._-] that are not "." or "..".
func validSPIFFEID(u *url.URL) bool {
	if u.User != nil || u.Port() != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawPath != "" {
		return false
	}
	td := u.Host
	if td == "" || strings.ContainsFunc(td, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_')
	}) {
		return false
	}
	if u.Path == "" {
		return true
	}
	for _, seg := range strings.Split(u.Path, "/")[1:] {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsFunc(seg, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_')
		}) {
			return false
		}
	}
	return true
}

package authority

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// Policy refusals. Each names the rule that refused.
var (
	ErrCNNotAllowed       = errs.New(errs.Forbidden, "cn_not_allowed", "common name not allowed")
	ErrKeyTooWeak         = errs.New(errs.Invalid, "key_too_weak", "key too weak")
	ErrKeyTypeNotAllowed  = errs.New(errs.Invalid, "key_type_not_allowed", "key type not allowed")
	ErrTTLNotAllowed      = errs.New(errs.Invalid, "ttl_not_allowed", "lifetime not allowed")
	ErrProvisionerKind    = errs.New(errs.Invalid, "provisioner_kind", "wrong kind of provisioner")
	ErrProvisionerUnknown = fsm.ErrProvisioner
	// ACME: an identifier type other than dns and ip, and a CSR whose
	// names are not exactly its order's.
	ErrACMEIdentifierType = errs.New(errs.Invalid, "unsupported_identifier", "identifier type not supported")
	ErrACMECSRNames       = errs.New(errs.Invalid, "bad_csr", "the CSR's names are not the order's")
)

func refuse(sentinel *errs.Error, format string, args ...any) *errs.Error {
	return sentinel.With(fmt.Sprintf(format, args...))
}

// Key types a policy may name.
const (
	KeyP256    = "P-256"
	KeyP384    = "P-384"
	KeyP521    = "P-521"
	KeyEd25519 = "Ed25519"
	KeyRSA     = "RSA"
)

var (
	defaultKeyTypes = []string{KeyP256, KeyP384, KeyEd25519, KeyRSA}
	knownKeyTypes   = []string{KeyP256, KeyP384, KeyP521, KeyEd25519, KeyRSA}
)

// Lifetime defaults and bounds of issued certificates.
const (
	DefaultCertTTL = 24 * time.Hour
	DefaultMaxTTL  = 30 * 24 * time.Hour
	// minCertTTL admits fleets of very short-lived certificates (and
	// tests that renew in seconds); provisioners set the real bounds.
	minCertTTL = 5 * time.Second
	maxCertTTL = 5 * 365 * 24 * time.Hour
)

// DefaultPolicy allows any name and the default key types: the admin who
// mints a token chooses its names.
func DefaultPolicy() fsm.Policy {
	return fsm.Policy{
		DNS: []string{"*"}, IP: []string{"0.0.0.0/0", "::/0"}, URI: []string{"**"}, Email: []string{"*"},
		DefaultTTL: DefaultCertTTL, MaxTTL: DefaultMaxTTL, EKU: "both",
	}
}

// CheckPolicy validates a policy before it is stored. Errors start with the
// field at fault ("ip[2]: ...").
func CheckPolicy(p *fsm.Policy) error {
	for i, d := range p.DNS {
		if d != "*" && !validDNSPattern(d) {
			return fmt.Errorf("dns[%d]: %q: want \"*\", a name, \"*.domain\" or \".domain\"", i, truncate(d))
		}
	}
	for field, pats := range map[string][]string{"uri": p.URI, "common_name": p.CommonName} {
		for i, pat := range pats {
			// Globs backtrack; a bounded number of wildcards bounds the cost.
			if pat == "" || strings.Count(pat, "*") > 4 || len(pat) > maxNameLen {
				return fmt.Errorf("%s[%d]: %q: 1-%d characters with at most 4 wildcards", field, i, truncate(pat), maxNameLen)
			}
		}
	}
	for i, pat := range p.URI {
		if _, err := parseURIPattern(pat); err != nil {
			return fmt.Errorf("uri[%d]: %q: %v", i, truncate(pat), err)
		}
	}
	for i, c := range p.IP {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("ip[%d]: %q is not a CIDR prefix", i, truncate(c))
		}
	}
	for i, e := range p.Email {
		if e != "*" && !strings.Contains(e, "@") {
			return fmt.Errorf("email[%d]: %q: want \"*\", \"@domain\" or an address", i, truncate(e))
		}
	}
	switch {
	case p.DefaultTTL < 0:
		return fmt.Errorf("default_ttl: must not be negative")
	case p.MaxTTL < 0:
		return fmt.Errorf("max_ttl: must not be negative")
	case p.RenewGrace < 0:
		return fmt.Errorf("renew_grace: must not be negative")
	case p.MaxTTL != 0 && (p.MaxTTL < minCertTTL || p.MaxTTL > maxCertTTL):
		return fmt.Errorf("max_ttl: must be between %s and %s", minCertTTL, maxCertTTL)
	case p.DefaultTTL != 0 && p.DefaultTTL > maxTTL(p):
		return fmt.Errorf("default_ttl: %s exceeds max_ttl %s", p.DefaultTTL, maxTTL(p))
	case p.RSAMinBits != 0 && (p.RSAMinBits < 1024 || p.RSAMinBits > maxRSABits):
		return fmt.Errorf("rsa_min_bits: must be between 1024 and %d", maxRSABits)
	}
	for i, k := range p.KeyTypes {
		if !slices.Contains(knownKeyTypes, k) {
			return fmt.Errorf("key_types[%d]: %q: want one of %v", i, truncate(k), knownKeyTypes)
		}
	}
	switch p.EKU {
	case "", "server", "client", "both":
	default:
		return fmt.Errorf("eku: %q: want server, client or both", truncate(p.EKU))
	}
	return nil
}

func maxTTL(p *fsm.Policy) time.Duration {
	if p.MaxTTL > 0 {
		return p.MaxTTL
	}
	return DefaultMaxTTL
}

// lifetime picks the certificate lifetime: the requested one if allowed,
// else the policy default.
func lifetime(p *fsm.Policy, requested time.Duration) (time.Duration, error) {
	if requested == 0 {
		if p.DefaultTTL > 0 {
			return p.DefaultTTL, nil
		}
		return min(DefaultCertTTL, maxTTL(p)), nil
	}
	if requested < minCertTTL || requested > maxTTL(p) {
		return 0, refuse(ErrTTLNotAllowed, "lifetime %s is outside %s-%s", requested, minCertTTL, maxTTL(p))
	}
	return requested, nil
}

// AllowedKeyTypes are the key types a policy allows: its own, or the
// default ones.
func AllowedKeyTypes(p *fsm.Policy) []string {
	if len(p.KeyTypes) == 0 {
		return defaultKeyTypes
	}
	return p.KeyTypes
}

// checkKey applies the policy's key rules.
func checkKeyPolicy(p *fsm.Policy, pub crypto.PublicKey) error {
	allowed := AllowedKeyTypes(p)
	var kind string
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		kind = k.Curve.Params().Name
	case ed25519.PublicKey:
		kind = KeyEd25519
	case *rsa.PublicKey:
		kind = KeyRSA
		minBits := p.RSAMinBits
		if minBits == 0 {
			minBits = minRSABits
		}
		if n := k.N.BitLen(); n < minBits || n > maxRSABits {
			return refuse(ErrKeyTooWeak, "RSA key has %d bits; %d-%d allowed", n, minBits, maxRSABits)
		}
	default:
		return refuse(ErrKeyTypeNotAllowed, "unsupported key type %T", pub)
	}
	if !slices.Contains(allowed, kind) {
		return refuse(ErrKeyTypeNotAllowed, "key type %s is not allowed (allowed: %s)", kind, strings.Join(allowed, ", "))
	}
	return nil
}

// checkNames applies the policy's name rules to a certificate's names.
func checkNames(p *fsm.Policy, n *certNames) error {
	for _, d := range n.dns {
		// "*.d" and ".d" cover the literal name "*.d"; only allow_wildcard
		// turns that into permission for a wildcard certificate.
		if isWildcard(d) && !p.AllowWildcard {
			return refuse(fsm.ErrNameNotAllowed, "DNS name %s is a wildcard; the provisioner does not allow wildcard certificates", d)
		}
		if !slices.ContainsFunc(p.DNS, func(pat string) bool { return matchDNS(pat, d) }) {
			return refuse(fsm.ErrNameNotAllowed, "DNS name %s is not allowed by the provisioner", d)
		}
	}
	for _, ip := range n.ips {
		if !slices.ContainsFunc(p.IP, func(c string) bool { return matchIP(c, ip) }) {
			return refuse(fsm.ErrNameNotAllowed, "IP address %s is not allowed by the provisioner", ip)
		}
	}
	for _, u := range n.uris {
		if !slices.ContainsFunc(p.URI, func(pat string) bool { return matchURI(pat, u) }) {
			return refuse(fsm.ErrNameNotAllowed, "URI %s is not allowed by the provisioner", u)
		}
	}
	for _, e := range n.emails {
		if !slices.ContainsFunc(p.Email, func(pat string) bool { return matchEmail(pat, e) }) {
			return refuse(fsm.ErrNameNotAllowed, "email %s is not allowed by the provisioner", e)
		}
	}
	// A common name that is also a SAN passed the SAN rules; any other must
	// match a common-name pattern.
	if n.cn != "" && !slices.Contains(n.all, n.cn) && !matchCN(p, n.cn) {
		if isWildcard(n.cn) && !p.AllowWildcard {
			return refuse(ErrCNNotAllowed, "common name %s is a wildcard; the provisioner does not allow wildcard certificates", n.cn)
		}
		return refuse(ErrCNNotAllowed, "common name %s is neither one of the certificate's names nor allowed by the provisioner", n.cn)
	}
	return nil
}

// matchCN: a common-name pattern allows cn. A "*" in a common name reads
// as a wildcard to clients that still match host names against it, so it
// needs allow_wildcard however the patterns read.
func matchCN(p *fsm.Policy, cn string) bool {
	if isWildcard(cn) && !p.AllowWildcard {
		return false
	}
	return slices.ContainsFunc(p.CommonName, func(pat string) bool { return matchGlob(pat, cn, 0) })
}

// isWildcard reports whether a DNS name or common name has a "*".
func isWildcard(name string) bool { return strings.Contains(name, "*") }

// checkTokenNames applies the policy to the names a token will allow: each
// must be allowed as a SAN or as a common name.
func checkTokenNames(p *fsm.Policy, names []string) error {
	for _, name := range names {
		one := &certNames{}
		one.add(name) // already canonical
		if checkNames(p, one) != nil && !matchCN(p, name) {
			return refuse(fsm.ErrNameNotAllowed, "name %s is not allowed by the provisioner", name)
		}
	}
	return nil
}

// matchDNS: "*" any name, "*.d" one label under d, ".d" any depth under d,
// otherwise the exact name.
func matchDNS(pat, name string) bool {
	switch {
	case pat == "*":
		return true
	case strings.HasPrefix(pat, "*."):
		rest, ok := strings.CutSuffix(name, pat[1:])
		return ok && rest != "" && !strings.Contains(rest, ".")
	case strings.HasPrefix(pat, "."):
		return strings.HasSuffix(name, pat) && len(name) > len(pat)
	}
	return pat == name
}

func matchIP(cidr string, ip net.IP) bool {
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil {
		return false
	}
	a, ok := netip.AddrFromSlice(ip)
	return ok && pfx.Contains(a.Unmap())
}

func matchEmail(pat, e string) bool {
	switch {
	case pat == "*":
		return true
	case strings.HasPrefix(pat, "@"):
		return strings.HasSuffix(e, pat)
	}
	return pat == e
}

// matchGlob matches s against pat where "**" matches anything and "*"
// matches any run without sep (sep 0: "*" matches anything too).
func matchGlob(pat, s string, sep byte) bool {
	for len(pat) > 0 {
		if strings.HasPrefix(pat, "**") {
			rest := pat[2:]
			for i := len(s); i >= 0; i-- {
				if matchGlob(rest, s[i:], sep) {
					return true
				}
			}
			return false
		}
		if pat[0] == '*' {
			rest := pat[1:]
			for i := 0; i <= len(s); i++ {
				if matchGlob(rest, s[i:], sep) {
					return true
				}
				if i < len(s) && sep != 0 && s[i] == sep {
					break
				}
			}
			return false
		}
		if len(s) == 0 || s[0] != pat[0] {
			return false
		}
		pat, s = pat[1:], s[1:]
	}
	return len(s) == 0
}

// extKeyUsage is the EKU a policy grants.
func extKeyUsage(p *fsm.Policy) []x509.ExtKeyUsage {
	switch p.EKU {
	case "server":
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case "client":
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
}

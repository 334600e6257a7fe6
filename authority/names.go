package authority

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strings"
)

// Names in tokens and certificates are kept in one canonical text form so a
// name allowed by a token compares equal to the same name in a CSR.

const (
	maxNames   = 100
	maxNameLen = 253
)

// normalizeName validates a SAN and returns its canonical form: DNS names
// lowercased without a trailing dot, IPs in Go's canonical form, URIs and
// emails as given.
func normalizeName(n string) (string, error) {
	if n == "" || len(n) > maxNameLen {
		return "", fmt.Errorf("name %q: must be 1-%d characters", truncate(n), maxNameLen)
	}
	if ip := net.ParseIP(n); ip != nil {
		return ip.String(), nil
	}
	if strings.Contains(n, "://") {
		u, err := url.Parse(n)
		if err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "") {
			return "", fmt.Errorf("URI name %q is not an absolute URI", truncate(n))
		}
		return u.String(), nil
	}
	if strings.Contains(n, "@") {
		a, err := mail.ParseAddress(n)
		if err != nil || a.Address != n {
			return "", fmt.Errorf("email name %q is not a bare address", truncate(n))
		}
		return n, nil
	}
	d := strings.TrimSuffix(strings.ToLower(n), ".")
	if !validDNSName(d) {
		return "", fmt.Errorf("DNS name %q is not valid", truncate(n))
	}
	return d, nil
}

// validDNSName accepts LDH labels, with an optional leading "*" label.
func validDNSName(d string) bool {
	if d == "" || len(d) > maxNameLen {
		return false
	}
	labels := strings.Split(d, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && len(labels) > 2 {
			continue
		}
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// normalizeNames validates, canonicalizes and de-duplicates, keeping order.
func normalizeNames(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("at least one name is required")
	}
	if len(in) > maxNames {
		return nil, fmt.Errorf("at most %d names are allowed", maxNames)
	}
	seen := map[string]bool{}
	out := make([]string, 0, len(in))
	for _, n := range in {
		c, err := normalizeName(n)
		if err != nil {
			return nil, err
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

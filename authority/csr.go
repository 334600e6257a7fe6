package authority

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/quorumca/quorumca/fsm"
)

const (
	minRSABits = 2048
	maxRSABits = 8192
)

// ParseCSR reads one PEM certificate request and checks its signature. Key
// rules are the provisioner's; here only keys too big to check cheaply and
// unknown key types are refused.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	blk, rest := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrBadCSR)
	}
	if blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: PEM block is %q, want CERTIFICATE REQUEST", ErrBadCSR, truncate(blk.Type))
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: unexpected data after the request", ErrBadCSR)
	}
	return parseCSRDER(blk.Bytes)
}

// parseCSRDER is ParseCSR for a DER request (ACME sends them so).
func parseCSRDER(der []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := checkKeyShape(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadCSR, err)
	}
	return csr, nil
}

func checkKeyShape(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() > maxRSABits {
			return refuse(ErrKeyTypeNotAllowed, "RSA keys above %d bits are not accepted", maxRSABits)
		}
	default:
		return refuse(ErrKeyTypeNotAllowed, "unsupported key type %T", pub)
	}
	return nil
}

// certNames are the names a certificate will carry, in canonical form.
type certNames struct {
	cn     string
	dns    []string
	ips    []net.IP
	uris   []*url.URL
	emails []string
	all    []string // every SAN, canonical, in order
}

func (n *certNames) add(name string) error {
	c, err := normalizeName(name)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if slices.Contains(n.all, c) {
		return nil
	}
	n.all = append(n.all, c)
	switch ip := net.ParseIP(c); {
	case ip != nil:
		n.ips = append(n.ips, ip)
	case strings.Contains(c, "://"):
		u, _ := url.Parse(c)
		n.uris = append(n.uris, u)
	case strings.Contains(c, "@"):
		n.emails = append(n.emails, c)
	default:
		n.dns = append(n.dns, c)
	}
	return nil
}

// csrNames collects every name a CSR asks for. A common name that is a DNS
// name or an address is also carried as a SAN, which is where relying
// parties look; any other common name ("svc-a") is left to the policy.
func csrNames(csr *x509.CertificateRequest) (*certNames, error) {
	return collectNames(csr.Subject.CommonName, csr.DNSNames, csr.IPAddresses, csr.URIs, csr.EmailAddresses)
}

// certNamesOf reads the names of an issued certificate, for renewals.
func certNamesOf(c *x509.Certificate) (*certNames, error) {
	return collectNames(c.Subject.CommonName, c.DNSNames, c.IPAddresses, c.URIs, c.EmailAddresses)
}

func collectNames(cn string, dns []string, ips []net.IP, uris []*url.URL, emails []string) (*certNames, error) {
	n := &certNames{}
	if cn != "" {
		if c, err := normalizeName(cn); err == nil && (net.ParseIP(c) != nil || strings.Contains(c, ".")) {
			if err := n.add(c); err != nil {
				return nil, err
			}
			n.cn = c
		} else {
			if len(cn) > 64 || strings.ContainsFunc(cn, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				return nil, fmt.Errorf("%w: common name must be 1-64 printable characters", ErrBadCSR)
			}
			n.cn = cn
		}
	}
	for _, d := range dns {
		if err := n.add(d); err != nil {
			return nil, err
		}
	}
	for _, ip := range ips {
		if err := n.add(ip.String()); err != nil {
			return nil, err
		}
	}
	for _, u := range uris {
		if err := n.add(u.String()); err != nil {
			return nil, err
		}
	}
	for _, e := range emails {
		if err := n.add(e); err != nil {
			return nil, err
		}
	}
	if len(n.all) == 0 && n.cn == "" {
		return nil, fmt.Errorf("%w: the request names no subject", ErrBadCSR)
	}
	if len(n.all) > maxNames {
		return nil, fmt.Errorf("%w: at most %d names", ErrBadCSR, maxNames)
	}
	if n.cn == "" && len(n.dns) > 0 {
		n.cn = n.dns[0]
	}
	return n, nil
}

// allowedBy checks every name against a token's list of names. A common
// name that is not a SAN must be in the list too.
func (n *certNames) allowedBy(list []string) error {
	for _, x := range n.all {
		if !slices.Contains(list, x) {
			return refuse(fsm.ErrNameNotAllowed, "name %s is not allowed by this token", x)
		}
	}
	if n.cn != "" && !slices.Contains(n.all, n.cn) && !slices.Contains(list, n.cn) {
		return refuse(fsm.ErrNameNotAllowed, "common name %s is not allowed by this token", n.cn)
	}
	return nil
}

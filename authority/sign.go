package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

const (
	defaultCertTTL = 24 * time.Hour
	minRSABits     = 2048
	maxRSABits     = 8192
)

// Issued is a certificate that has been committed, with its chain.
type Issued struct {
	Cert  fsm.Cert
	Chain [][]byte // DER, issuing certificate first, root excluded
}

// SignWithToken issues a certificate for a CSR authorized by a single-use
// enrollment token. The certificate is returned only after its record and
// the token's consumption are committed together; if the commit is refused
// (the token was used a moment ago through another node), the signed
// certificate is discarded.
func (ca *CA) SignWithToken(ctx context.Context, csrPEM []byte, secret string) (*Issued, error) {
	tok, hash, err := ca.enrollmentToken(ctx, secret)
	if err != nil {
		return nil, err
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	names, err := csrNames(csr)
	if err != nil {
		return nil, err
	}
	for _, n := range names.all {
		if !slices.Contains(tok.SANs, n) {
			return nil, &fsm.Error{Code: fsm.ErrNameNotAllowed.Code, Message: "name " + n + " is not allowed by this token"}
		}
	}
	a, err := ca.state.Authority(DefaultAuthority)
	if err != nil {
		return nil, fmt.Errorf("%w: no authority is configured", ErrUnavailable)
	}
	rec, err := ca.sign(ctx, a, csr.PublicKey, names)
	if err != nil {
		return nil, err
	}
	rec.Requester = "token:" + tok.ID
	if err := ca.propose(ctx, fsm.CmdIssue, fsm.Issue{TokenHash: hash, Cert: *rec}); err != nil {
		return nil, err
	}
	rec.TokenID = tok.ID
	rec.IssuedAt = time.Time{} // stamped by the FSM; read the record for it
	return &Issued{Cert: *rec, Chain: a.Chain}, nil
}

// ParseCSR reads one PEM certificate request, checks its signature and key.
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
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadCSR, err)
	}
	return csr, nil
}

func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: ECDSA curve must be P-256 or P-384", ErrBadCSR)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
			return fmt.Errorf("%w: RSA key is %d bits; %d-%d allowed", ErrBadCSR, n, minRSABits, maxRSABits)
		}
	default:
		return fmt.Errorf("%w: unsupported key type %T", ErrBadCSR, pub)
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
	all    []string
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

// csrNames collects every name a CSR asks for. The common name, if any,
// is also carried as a SAN, which is where relying parties look.
func csrNames(csr *x509.CertificateRequest) (*certNames, error) {
	n := &certNames{}
	if cn := csr.Subject.CommonName; cn != "" {
		if err := n.add(cn); err != nil {
			return nil, err
		}
		n.cn = n.all[0]
	}
	for _, d := range csr.DNSNames {
		if err := n.add(d); err != nil {
			return nil, err
		}
	}
	for _, ip := range csr.IPAddresses {
		if err := n.add(ip.String()); err != nil {
			return nil, err
		}
	}
	for _, u := range csr.URIs {
		if err := n.add(u.String()); err != nil {
			return nil, err
		}
	}
	for _, e := range csr.EmailAddresses {
		if err := n.add(e); err != nil {
			return nil, err
		}
	}
	if len(n.all) == 0 {
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

// sign makes the certificate. Everything non-deterministic happens here, on
// the node that received the request: serial, validity, signature.
func (ca *CA) sign(ctx context.Context, a *fsm.Authority, pub crypto.PublicKey, names *certNames) (*fsm.Cert, error) {
	if len(a.Chain) == 0 {
		return nil, fmt.Errorf("%w: authority %s has no issuing certificate", ErrUnavailable, a.Name)
	}
	issuer, err := x509.ParseCertificate(a.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("authority %s: %w", a.Name, err)
	}
	key, err := ca.signers.Get(ctx, a.KeyURI)
	if err != nil {
		return nil, fmt.Errorf("%w: signer: %v", ErrUnavailable, err)
	}
	ttl := a.DefaultTTL
	if ttl <= 0 {
		ttl = defaultCertTTL
	}
	// Whole seconds: the record's times then equal the certificate's.
	now := ca.now().UTC().Truncate(time.Second)
	tmpl, err := baseTemplate(pub, ttl, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	tmpl.Subject = pkix.Name{CommonName: names.cn}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl.DNSNames, tmpl.IPAddresses, tmpl.URIs, tmpl.EmailAddresses = names.dns, names.ips, names.uris, names.emails
	if _, ok := pub.(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if tmpl.NotAfter.After(issuer.NotAfter) {
		tmpl.NotAfter = issuer.NotAfter
	}
	if !tmpl.NotAfter.After(now) {
		return nil, fmt.Errorf("%w: authority %s has expired", ErrUnavailable, a.Name)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, signer.CryptoSigner(ctx, key))
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return &fsm.Cert{
		Serial:    SerialHex(tmpl.SerialNumber),
		Authority: a.Name,
		Subject:   tmpl.Subject.String(),
		SANs:      names.all,
		NotBefore: tmpl.NotBefore,
		NotAfter:  tmpl.NotAfter,
		DER:       der,
	}, nil
}

// checkAuthority verifies an authority before it is stored: the chain links
// to the root, the key opens, and it is the issuing certificate's key.
func (ca *CA) checkAuthority(ctx context.Context, a *fsm.Authority) error {
	if a.Name == "" || len(a.Chain) == 0 || len(a.Root) == 0 || a.KeyURI == "" {
		return fmt.Errorf("%w: authority needs a name, root, chain and key", ErrInvalidRequest)
	}
	root, err := x509.ParseCertificate(a.Root)
	if err != nil {
		return fmt.Errorf("%w: root: %v", ErrInvalidRequest, err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	var issuer *x509.Certificate
	for i, der := range a.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("%w: chain[%d]: %v", ErrInvalidRequest, i, err)
		}
		if i == 0 {
			issuer = c
		} else {
			inter.AddCert(c)
		}
	}
	if !issuer.IsCA {
		return fmt.Errorf("%w: issuing certificate is not a CA", ErrInvalidRequest)
	}
	if _, err := issuer.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: ca.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%w: chain does not verify to the root: %v", ErrInvalidRequest, err)
	}
	key, err := ca.signers.Get(ctx, a.KeyURI)
	if err != nil {
		return fmt.Errorf("%w: key %s: %v", ErrInvalidRequest, a.KeyURI, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(issuer.PublicKey) {
		return fmt.Errorf("%w: key %s is not the issuing certificate's key", ErrInvalidRequest, a.KeyURI)
	}
	return nil
}

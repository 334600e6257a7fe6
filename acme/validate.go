package acme

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// Validation of challenges (RFC 8555 section 8, RFC 8737 for tls-alpn-01),
// from this node. A private CA validates names on private networks, so the
// resolvers and ports are configurable: acme { resolvers, http01_port,
// tlsalpn01_port }.

// ValidatorConfig is the node's acme block.
type ValidatorConfig struct {
	// Resolvers are DNS servers (host:port) for A/AAAA and TXT lookups;
	// empty: the system's.
	Resolvers   []string
	HTTP01Port  int // 0: 80
	TLSALPNPort int // 0: 443
	Timeout     time.Duration
	// Perspectives: a challenge passes only when this many zones see the
	// answer (this node's and others', asked over the internal RPC);
	// 0 or 1: this node alone. Zone is this node's ("": its name, so
	// every node is a zone of its own).
	Perspectives int
	Zone         string
}

// Validator checks one challenge.
type Validator struct {
	cfg      ValidatorConfig
	resolver *net.Resolver
}

// NewValidator makes a validator from the node's configuration.
func NewValidator(cfg ValidatorConfig) *Validator {
	if cfg.HTTP01Port == 0 {
		cfg.HTTP01Port = 80
	}
	if cfg.TLSALPNPort == 0 {
		cfg.TLSALPNPort = 443
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	v := &Validator{cfg: cfg, resolver: net.DefaultResolver}
	if len(cfg.Resolvers) > 0 {
		servers := cfg.Resolvers
		v.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			var err error
			for _, s := range servers {
				var c net.Conn
				if c, err = d.DialContext(ctx, network, s); err == nil {
					return c, nil
				}
			}
			return nil, err
		}}
	}
	return v
}

// awsMetadataV6 is EC2's instance metadata service over IPv6.
var awsMetadataV6 = net.ParseIP("fd00:ec2::254")

// metadataAddress: an address a validation never connects to. Cloud
// metadata services live at link-local addresses (169.254.169.254 on
// AWS, Azure, GCP) and at EC2's IPv6 one; a client must not be able to
// point the validator at them.
func metadataAddress(ip net.IP) bool {
	return ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast() || ip.Equal(awsMetadataV6)
}

// KeyAuthorization is token "." the account key's thumbprint.
func KeyAuthorization(token, thumbprint string) string { return token + "." + thumbprint }

// Validate checks that the challenge is answered for the identifier with
// keyAuth; a failure is a problem of the type RFC 8555 gives it.
func (v *Validator) Validate(ctx context.Context, id fsm.ACMEIdentifier, typ, token, keyAuth string) error {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	switch typ {
	case authority.ChallengeHTTP01:
		return v.http01(ctx, id, token, keyAuth)
	case authority.ChallengeDNS01:
		return v.dns01(ctx, id, keyAuth)
	case authority.ChallengeTLSALPN01:
		return v.tlsALPN01(ctx, id, keyAuth)
	}
	return malformed("unknown challenge type %s", typ)
}

// addrs resolves a name with the configured resolvers (an IP identifier is
// its own address).
func (v *Validator) addrs(ctx context.Context, host string) ([]string, error) {
	if net.ParseIP(host) != nil {
		return []string{host}, nil
	}
	as, err := v.resolver.LookupHost(ctx, host)
	if err != nil || len(as) == 0 {
		return nil, problem(errs.Forbidden, ProbDNS, "no address for %s: %v", host, err)
	}
	return as, nil
}

// dial connects to port on one of host's addresses.
func (v *Validator) dial(ctx context.Context, host string, port int) (net.Conn, error) {
	as, err := v.addrs(ctx, host)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	for _, a := range as {
		if ip := net.ParseIP(a); ip != nil && metadataAddress(ip) {
			err = fmt.Errorf("address %s is link-local or a metadata service; the validator never connects to it", a)
			continue
		}
		var c net.Conn
		if c, err = d.DialContext(ctx, "tcp", net.JoinHostPort(a, strconv.Itoa(port))); err == nil {
			return c, nil
		}
	}
	return nil, problem(errs.Forbidden, ProbConnection, "cannot connect to %s port %d: %v", host, port, err)
}

func (v *Validator) http01(ctx context.Context, id fsm.ACMEIdentifier, token, keyAuth string) error {
	host := id.Value
	client := &http.Client{
		Transport: &http.Transport{
			// Every connection, redirects' too, goes to the addresses the
			// configured resolvers give, at the configured port.
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				h, p, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				port, _ := strconv.Atoi(p)
				return v.dial(ctx, h, port)
			},
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // RFC 8555 8.3: a redirect to https is not checked
			DisableKeepAlives: true,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errRedirect
			}
			// As Boulder: a redirect stays on the challenge ports, so a
			// client cannot point the validator at other services.
			port := req.URL.Port()
			switch req.URL.Scheme {
			case "http":
				if port == "" {
					port = "80"
				}
				if port != strconv.Itoa(v.cfg.HTTP01Port) {
					return errRedirect
				}
			case "https":
				if port != "" && port != "443" {
					return errRedirect
				}
			default:
				return errRedirect
			}
			return nil
		},
	}
	hostport := net.JoinHostPort(host, strconv.Itoa(v.cfg.HTTP01Port))
	if v.cfg.HTTP01Port == 80 && net.ParseIP(host) == nil {
		hostport = host
	}
	url := "http://" + hostport + "/.well-known/acme-challenge/" + token
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return malformed("http-01 URL: %v", err)
	}
	req.Header.Set("User-Agent", "quorumca-acme-validator")
	// Nothing a server answered is quoted back, nor its status: the
	// validator must not become a way to read, or map, what private
	// addresses serve. Go's errors quote Location headers and banners.
	resp, err := client.Do(req)
	var p *Problem
	switch {
	case err == nil:
	case errors.As(err, &p):
		return p // the dial's, which names only the address
	case errors.Is(err, errRedirect):
		return problem(errs.Forbidden, ProbConnection, "http-01: %s redirected beyond the challenge ports (http %d, https 443) or more than 10 times", url, v.cfg.HTTP01Port)
	case errors.Is(err, context.DeadlineExceeded), ctx.Err() != nil:
		return problem(errs.Forbidden, ProbConnection, "http-01: %s did not answer in time", url)
	default:
		return problem(errs.Forbidden, ProbConnection, "http-01: %s did not answer with HTTP", url)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil || resp.StatusCode != http.StatusOK || strings.TrimRight(string(body), " \t\r\n") != keyAuth {
		return unauthorized("http-01: %s did not answer with the key authorization", url)
	}
	return nil
}

// errRedirect: a redirect the validator does not follow.
var errRedirect = errors.New("redirect refused")

// DNS01Value is the TXT record that answers a dns-01 challenge.
func DNS01Value(keyAuth string) string {
	sum := sha256.Sum256([]byte(keyAuth))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (v *Validator) dns01(ctx context.Context, id fsm.ACMEIdentifier, keyAuth string) error {
	name := "_acme-challenge." + strings.TrimPrefix(id.Value, "*.")
	txts, err := v.resolver.LookupTXT(ctx, name)
	if err != nil {
		return problem(errs.Forbidden, ProbDNS, "dns-01: TXT %s: %v", name, err)
	}
	want := DNS01Value(keyAuth)
	for _, t := range txts {
		if t == want {
			return nil
		}
	}
	return unauthorized("dns-01: no TXT record of %s holds the key authorization's digest (found %d records)", name, len(txts))
}

// idPeAcmeIdentifier is RFC 8737's certificate extension.
var idPeAcmeIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

func (v *Validator) tlsALPN01(ctx context.Context, id fsm.ACMEIdentifier, keyAuth string) error {
	raw, err := v.dial(ctx, id.Value, v.cfg.TLSALPNPort)
	if err != nil {
		return err
	}
	defer raw.Close()
	sni := id.Value
	if ip := net.ParseIP(id.Value); ip != nil {
		sni = reverseName(ip) // RFC 8738 section 6
	}
	conn := tls.Client(raw, &tls.Config{
		ServerName: sni, NextProtos: []string{"acme-tls/1"},
		InsecureSkipVerify: true, // the certificate is self-signed by design
		MinVersion:         tls.VersionTLS12,
	})
	if err := conn.HandshakeContext(ctx); err != nil {
		return problem(errs.Forbidden, ProbTLS, "tls-alpn-01: handshake with %s: %v", id.Value, err)
	}
	st := conn.ConnectionState()
	if st.NegotiatedProtocol != "acme-tls/1" || len(st.PeerCertificates) == 0 {
		return unauthorized("tls-alpn-01: %s did not negotiate acme-tls/1", id.Value)
	}
	leaf := st.PeerCertificates[0]
	if !certNamesOnly(leaf, id) {
		return unauthorized("tls-alpn-01: the certificate must name %s and nothing else", id.Value)
	}
	sum := sha256.Sum256([]byte(keyAuth))
	for _, e := range leaf.Extensions {
		if !e.Id.Equal(idPeAcmeIdentifier) {
			continue
		}
		var got []byte
		if rest, err := asn1.Unmarshal(e.Value, &got); err != nil || len(rest) > 0 || !e.Critical {
			return unauthorized("tls-alpn-01: the acmeIdentifier extension must be critical and an OCTET STRING")
		}
		if !bytes.Equal(got, sum[:]) {
			return problem(errs.Forbidden, ProbIncorrectResponse, "tls-alpn-01: the acmeIdentifier extension does not hold the key authorization's digest")
		}
		return nil
	}
	return unauthorized("tls-alpn-01: the certificate has no acmeIdentifier extension")
}

// certNamesOnly: the certificate's only SAN is the identifier.
func certNamesOnly(c *x509.Certificate, id fsm.ACMEIdentifier) bool {
	if id.Type == "ip" {
		return len(c.DNSNames) == 0 && len(c.IPAddresses) == 1 && c.IPAddresses[0].Equal(net.ParseIP(id.Value))
	}
	return len(c.IPAddresses) == 0 && len(c.DNSNames) == 1 && strings.EqualFold(c.DNSNames[0], id.Value)
}

func reverseName(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa", v4[3], v4[2], v4[1], v4[0])
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := len(ip) - 1; i >= 0; i-- {
		b.WriteByte(hex[ip[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[ip[i]>>4])
		b.WriteByte('.')
	}
	return b.String() + "ip6.arpa"
}

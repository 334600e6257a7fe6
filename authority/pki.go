package authority

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// NewSerial returns a positive 20-octet serial number: the time in
// nanoseconds, then 96 random bits.
func NewSerial() (*big.Int, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b[8:]); err != nil {
		return nil, err
	}
	// The time first: records keyed by serial then go to the end of the
	// database's B+tree instead of a random page each, which halves the
	// cost of committing a batch of issuances. The 96 random bits stay
	// well above the 64 that unpredictability asks for. Until 2262 the
	// nanoseconds keep the top bit clear (a positive serial) and the first
	// byte non-zero (always 20 bytes, 40 hex digits: text order is
	// numeric order).
	binary.BigEndian.PutUint64(b, uint64(time.Now().UnixNano()))
	return new(big.Int).SetBytes(b), nil
}

// SerialHex is the canonical text form of a serial: lowercase hex, no
// leading zeros.
func SerialHex(n *big.Int) string { return n.Text(16) }

// keyID is RFC 7093 method 1: the leftmost 160 bits of the SHA-256 of the
// subject public key.
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	h := sha256.Sum256(spki.PublicKey.Bytes)
	return h[:20], nil
}

// CreateRoot makes a self-signed root certificate.
func CreateRoot(key crypto.Signer, cn string, ttl time.Duration, now time.Time) (*x509.Certificate, error) {
	tmpl, err := caTemplate(key.Public(), cn, ttl, now)
	if err != nil {
		return nil, err
	}
	return create(tmpl, tmpl, key.Public(), key)
}

// CreateIntermediate makes an issuing CA certificate for pub, signed by the root.
func CreateIntermediate(root *x509.Certificate, rootKey crypto.Signer, pub crypto.PublicKey, cn string, ttl time.Duration, now time.Time) (*x509.Certificate, error) {
	return CreateLinkedIntermediate(root, rootKey, pub, cn, ttl, now, "", "")
}

// CreateLinkedIntermediate is CreateIntermediate that, with a base URL,
// names where the root's certificate and CRL are served (AIA caIssuers,
// CRL distribution point): relying parties that check the whole chain
// (nginx ssl_crl, HAProxy crl-file) find the CRL that covers it there.
func CreateLinkedIntermediate(root *x509.Certificate, rootKey crypto.Signer, pub crypto.PublicKey, cn string, ttl time.Duration, now time.Time, baseURL, authority string) (*x509.Certificate, error) {
	tmpl, err := caTemplate(pub, cn, ttl, now)
	if err != nil {
		return nil, err
	}
	if baseURL != "" {
		tmpl.IssuingCertificateURL = []string{RootCertURL(baseURL, authority, IssuerID(root))}
		tmpl.CRLDistributionPoints = []string{RootCRLURL(baseURL, authority, IssuerID(root))}
	}
	tmpl.MaxPathLenZero = true
	if tmpl.NotAfter.After(root.NotAfter) {
		tmpl.NotAfter = root.NotAfter
	}
	return create(tmpl, root, pub, rootKey)
}

// backdate absorbs clock skew between the CA and relying parties.
const backdate = time.Minute

// baseTemplate has what every certificate we make carries: a fresh serial,
// the subject key id, and validity from backdate ago to ttl from now.
func baseTemplate(pub crypto.PublicKey, ttl time.Duration, now time.Time) (*x509.Certificate, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	ski, err := keyID(pub)
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ttl),
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
	}, nil
}

func caTemplate(pub crypto.PublicKey, cn string, ttl time.Duration, now time.Time) (*x509.Certificate, error) {
	tmpl, err := baseTemplate(pub, ttl, now)
	if err != nil {
		return nil, err
	}
	tmpl.Subject = pkix.Name{CommonName: cn, Organization: []string{"quorumca"}}
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	tmpl.IsCA = true
	return tmpl, nil
}

// CreateServerCert makes a TLS server certificate for a node's API, signed
// directly by parent. Dev mode signs these with the root so the issuing
// authority's log stays a log of what clients asked for.
func CreateServerCert(parent *x509.Certificate, parentKey crypto.Signer, pub crypto.PublicKey, hosts []string, ttl time.Duration, now time.Time) (*x509.Certificate, error) {
	tmpl, err := baseTemplate(pub, ttl, now)
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if len(hosts) > 0 {
		tmpl.Subject.CommonName = hosts[0]
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if tmpl.NotAfter.After(parent.NotAfter) {
		tmpl.NotAfter = parent.NotAfter
	}
	return create(tmpl, parent, pub, parentKey)
}

func create(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// EncodePEM returns DER certificates as concatenated PEM.
func EncodePEM(ders ...[]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}

// ParseCertsPEM reads every CERTIFICATE block in b.
func ParseCertsPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate found")
	}
	return out, nil
}

// Fingerprint is the SHA-256 of a certificate's DER, hex encoded.
func Fingerprint(c *x509.Certificate) string {
	return fmt.Sprintf("%x", sha256.Sum256(c.Raw))
}

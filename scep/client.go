package scep

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"

	"github.com/smallstep/pkcs7"
)

// The client side, for quorumca's own tools (bench, the fault suite) and
// tests; devices use their own SCEP clients.

// Sent is a request as a client sent it, to read its reply with.
type Sent struct {
	Message       []byte
	TransactionID string
	nonce         []byte
	signer        *x509.Certificate
	key           crypto.PrivateKey
}

// NewRequest makes a pkiMessage of type msgType carrying content (a DER
// CSR, IssuerAndSerial or IssuerAndSubject) encrypted to the RA's
// certificate, signed by signer with key.
func NewRequest(msgType string, content []byte, ra, signer *x509.Certificate, key crypto.Signer, transactionID string) (*Sent, error) {
	env, err := encrypt(content, ra)
	if err != nil {
		return nil, err
	}
	return NewSigned(msgType, env, signer, key, transactionID)
}

// NewSigned makes a pkiMessage around an envelope made elsewhere (tests
// that forge one).
func NewSigned(msgType string, env []byte, signer *x509.Certificate, key crypto.Signer, transactionID string) (*Sent, error) {
	sd, err := pkcs7.NewSignedData(env)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	attrs := []pkcs7.Attribute{
		{Type: oidTransactionID, Value: transactionID},
		{Type: oidMessageType, Value: msgType},
		{Type: oidSenderNonce, Value: nonce},
	}
	if err := sd.AddSigner(signer, key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
		return nil, err
	}
	msg, err := sd.Finish()
	if err != nil {
		return nil, err
	}
	return &Sent{Message: msg, TransactionID: transactionID, nonce: nonce, signer: signer, key: key}, nil
}

// ReadReply checks a CertRep against the request (signed by one of the
// RA's certificates, the transaction and nonce echoed) and returns what it
// says: a failure, or the certificates and CRLs it carries.
func (s *Sent) ReadReply(der []byte, raCerts []*x509.Certificate) (out Reply, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	p7, out, err := s.check(der, raCerts)
	if err != nil || out.FailInfo != "" {
		return out, err
	}
	env, err := pkcs7.Parse(p7.Content)
	if err != nil {
		return Reply{}, fmt.Errorf("%w: reply envelope: %v", ErrMalformed, err)
	}
	inner, err := env.Decrypt(s.signer, s.key)
	if err != nil {
		return Reply{}, fmt.Errorf("%w: reply envelope: %v", ErrMalformed, err)
	}
	certs, err := pkcs7.Parse(inner)
	if err != nil {
		return Reply{}, fmt.Errorf("%w: reply content: %v", ErrMalformed, err)
	}
	for _, c := range certs.Certificates {
		out.Certs = append(out.Certs, c.Raw)
	}
	for _, c := range certs.CRLs {
		b, err := asn1.Marshal(c)
		if err != nil {
			return Reply{}, err
		}
		out.CRLs = append(out.CRLs, b)
	}
	return out, nil
}

// Check is ReadReply without opening a success's envelope: whether the
// RA answered this request, and how (a load generator's view, which
// spends no private-key operation of its own per answer).
func (s *Sent) Check(der []byte, raCerts []*x509.Certificate) (out Reply, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	_, out, err = s.check(der, raCerts)
	return out, err
}

func (s *Sent) check(der []byte, raCerts []*x509.Certificate) (*pkcs7.PKCS7, Reply, error) {
	var out Reply
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, out, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	p7.Certificates = append(p7.Certificates, raCerts...)
	if err := p7.Verify(); err != nil {
		return nil, out, fmt.Errorf("%w: reply signature: %v", ErrMalformed, err)
	}
	var typ, tid, status string
	var recipientNonce []byte
	for _, a := range []struct {
		oid asn1.ObjectIdentifier
		out any
	}{{oidMessageType, &typ}, {oidTransactionID, &tid}, {oidPKIStatus, &status}, {oidRecipientNonce, &recipientNonce}} {
		if err := p7.UnmarshalSignedAttribute(a.oid, a.out); err != nil {
			return nil, out, fmt.Errorf("%w: reply attribute %v: %v", ErrMalformed, a.oid, err)
		}
	}
	if typ != CertRep || tid != s.TransactionID || string(recipientNonce) != string(s.nonce) {
		return nil, out, fmt.Errorf("%w: not a CertRep to this request", ErrMalformed)
	}
	switch status {
	case StatusFailure:
		if err := p7.UnmarshalSignedAttribute(oidFailInfo, &out.FailInfo); err != nil || out.FailInfo == "" {
			return nil, out, fmt.Errorf("%w: a failure without failInfo", ErrMalformed)
		}
		var text asn1.RawValue
		if p7.UnmarshalSignedAttribute(oidFailInfoText, &text) == nil {
			out.FailText = string(text.Bytes)
		}
	case StatusSuccess:
	default:
		return nil, out, fmt.Errorf("%w: pkiStatus %q", ErrMalformed, status)
	}
	return p7, out, nil
}

// CSRWithChallenge makes a PKCS#10 request from tmpl carrying a
// challengePassword attribute, which Go's x509 cannot write: the request
// Go makes, the attribute added, signed again. RSA and ECDSA keys, SHA-256.
func CSRWithChallenge(tmpl *x509.CertificateRequest, key crypto.Signer, challenge string) ([]byte, error) {
	switch tmpl.SignatureAlgorithm {
	case x509.UnknownSignatureAlgorithm, x509.SHA256WithRSA, x509.ECDSAWithSHA256:
	default:
		return nil, fmt.Errorf("scep: CSRs are signed with SHA-256 here, not %s", tmpl.SignatureAlgorithm)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}
	var outer struct {
		TBS       asn1.RawValue
		Algorithm asn1.RawValue
		Signature asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		return nil, err
	}
	var tbs struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes []asn1.RawValue `asn1:"tag:0,set"`
	}
	if _, err := asn1.Unmarshal(outer.TBS.FullBytes, &tbs); err != nil {
		return nil, err
	}
	attr, err := asn1.Marshal(struct {
		Type   asn1.ObjectIdentifier
		Values []string `asn1:"set"`
	}{oidChallengePassword, []string{challenge}})
	if err != nil {
		return nil, err
	}
	tbs.Attributes = append(tbs.Attributes, asn1.RawValue{FullBytes: attr})
	tbsDER, err := asn1.Marshal(tbs)
	if err != nil {
		return nil, err
	}
	digest := crypto.SHA256.New()
	digest.Write(tbsDER)
	sig, err := key.Sign(rand.Reader, digest.Sum(nil), crypto.SHA256)
	if err != nil {
		return nil, err
	}
	outer.TBS = asn1.RawValue{FullBytes: tbsDER}
	outer.Signature = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	return asn1.Marshal(outer)
}

// ParseCACerts reads GetCACert's answer: a certs-only PKCS#7 (the RA's
// certificate first), or one DER certificate.
func ParseCACerts(der []byte) ([]*x509.Certificate, error) {
	if c, err := x509.ParseCertificate(der); err == nil {
		return []*x509.Certificate{c}, nil
	}
	p7, err := pkcs7.Parse(der)
	if err != nil || len(p7.Certificates) == 0 {
		return nil, fmt.Errorf("%w: GetCACert: no certificates", ErrMalformed)
	}
	return p7.Certificates, nil
}

// SelfSigned is the certificate a client without one signs its first
// request with (RFC 8894 2.3): its key, its subject, a short life.
func SelfSigned(key crypto.Signer, cn string) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

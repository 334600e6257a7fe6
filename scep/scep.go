// Package scep reads and writes SCEP messages (RFC 8894): a pkiMessage is
// a CMS SignedData whose signed attributes say what it is, around an
// EnvelopedData (the pkcsPKIEnvelope) encrypted to the receiver. It does
// the message work only; the HTTP endpoint and the policy are elsewhere.
package scep

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"github.com/smallstep/pkcs7"
)

// Message types (RFC 8894 3.2.1.2).
const (
	CertRep    = "3"
	RenewalReq = "17"
	PKCSReq    = "19"
	CertPoll   = "20"
	GetCert    = "21"
	GetCRL     = "22"
)

// pkiStatus values (3.2.1.3).
const (
	StatusSuccess = "0"
	StatusFailure = "2"
)

// failInfo values (3.2.1.4).
const (
	FailBadAlg          = "0"
	FailBadMessageCheck = "1"
	FailBadRequest      = "2"
	FailBadTime         = "3"
	FailBadCertID       = "4"
)

// Signed attributes (3.2.1, 3.2.1.4.1).
var (
	oidMessageType    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidSenderNonce    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
	oidTransactionID  = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
	oidFailInfoText   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 24, 1}

	oidChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
)

// ErrMalformed: not a pkiMessage this package can read, or one whose
// signature does not verify.
var ErrMalformed = errors.New("scep: malformed message")

// Request is a client's pkiMessage, its signature verified.
type Request struct {
	Type          string
	TransactionID string
	SenderNonce   []byte
	// Signer is the certificate the client signed with: a self-signed one
	// for PKCSReq, its current certificate for RenewalReq. Replies are
	// encrypted to it.
	Signer   *x509.Certificate
	envelope []byte // the pkcsPKIEnvelope, still encrypted
}

// Parse reads a pkiMessage and verifies its signature with the signer's
// certificate the message carries. It says nothing of who the signer is.
func Parse(der []byte) (req *Request, err error) {
	defer func() {
		// The CMS parser is a library's: whatever it trips on is malformed
		// input, never a crash of the server.
		if r := recover(); r != nil {
			req, err = nil, fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	if err := checkNesting(der); err != nil {
		return nil, err
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return nil, fmt.Errorf("%w: want one signer and its certificate", ErrMalformed)
	}
	if err := p7.Verify(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	r := &Request{Signer: signer, envelope: p7.Content}
	if err := p7.UnmarshalSignedAttribute(oidMessageType, &r.Type); err != nil {
		return nil, fmt.Errorf("%w: messageType: %v", ErrMalformed, err)
	}
	if err := p7.UnmarshalSignedAttribute(oidTransactionID, &r.TransactionID); err != nil || r.TransactionID == "" || len(r.TransactionID) > 128 {
		return nil, fmt.Errorf("%w: transactionID missing or longer than 128", ErrMalformed)
	}
	if err := p7.UnmarshalSignedAttribute(oidSenderNonce, &r.SenderNonce); err != nil || len(r.SenderNonce) == 0 || len(r.SenderNonce) > 64 {
		return nil, fmt.Errorf("%w: senderNonce missing or longer than 64 bytes", ErrMalformed)
	}
	return r, nil
}

// errOpen is every failure to open an envelope, alike: which step failed
// (the RSA padding, the content's cipher) must not show, or the RA would
// be a padding oracle (Bleichenbacher's attack) for whoever sends it
// envelopes.
var errOpen = fmt.Errorf("%w: the envelope does not open with the RA's key", ErrMalformed)

// Open decrypts the request's envelope with the RA's key, encrypted to
// one of the RA's certificates (every one certifies the same key).
func (r *Request) Open(certs []*x509.Certificate, key crypto.Decrypter) (content []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			content, err = nil, errOpen
		}
	}()
	if checkNesting(r.envelope) != nil {
		return nil, errOpen
	}
	env, err := pkcs7.Parse(r.envelope)
	if err != nil {
		return nil, errOpen
	}
	d := implicitRejection{key, contentKeyLen(r.envelope)}
	for _, c := range certs {
		if content, err = env.Decrypt(c, d); err == nil {
			return content, nil
		}
	}
	return nil, errOpen
}

// implicitRejection makes every RSAES-PKCS1-v1_5 key transport yield a
// content key of the length the envelope's cipher takes, as RFC 3218
// section 2.3.2 says: a wrong padding, or a right one around a key of
// another length, gets a random key. Every envelope then goes on to
// decrypt its content alike, and neither the answer nor its time tells
// whether the padding was right (Bleichenbacher's oracle).
type implicitRejection struct {
	crypto.Decrypter
	keyLen int
}

func (d implicitRejection) Decrypt(random io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	//lint:ignore SA1019 SCEP clients transport keys with PKCS#1 v1.5 (RFC 8894); this is the mitigation.
	if _, v15 := opts.(*rsa.PKCS1v15DecryptOptions); !v15 {
		return d.Decrypter.Decrypt(random, msg, opts)
	}
	// In memory, Go's RSA makes a wrong padding a random key in constant
	// time; a PKCS#11 key does not take SessionKeyLen (an error before the
	// HSM is asked) and answers a wrong padding with an error.
	//lint:ignore SA1019 as above
	key, err := d.Decrypter.Decrypt(random, msg, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: d.keyLen})
	if err != nil {
		//lint:ignore SA1019 as above
		key, err = d.Decrypter.Decrypt(random, msg, &rsa.PKCS1v15DecryptOptions{})
	}
	if err != nil || len(key) != d.keyLen {
		key = make([]byte, d.keyLen)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
	}
	return key, nil
}

// cipherOIDs are the DER encodings of the content ciphers' OIDs (always
// DER, in BER too) and their key lengths.
var cipherOIDs = []struct {
	oid    asn1.ObjectIdentifier
	keyLen int
}{
	{pkcs7.OIDEncryptionAlgorithmDESCBC, 8},
	{pkcs7.OIDEncryptionAlgorithmDESEDE3CBC, 24},
	{pkcs7.OIDEncryptionAlgorithmAES128CBC, 16},
	{pkcs7.OIDEncryptionAlgorithmAES256CBC, 32},
	{pkcs7.OIDEncryptionAlgorithmAES128GCM, 16},
	{pkcs7.OIDEncryptionAlgorithmAES256GCM, 32},
}

// contentKeyLen is the key length of the first content cipher the
// envelope names (16 when it names none). A client names one, in its
// encryptedContentInfo; a forger who names others only picks the length
// of the random key its own envelopes get.
func contentKeyLen(envelope []byte) int {
	first, n := len(envelope), 16
	for _, c := range cipherOIDs {
		der, _ := asn1.Marshal(c.oid)
		if i := bytes.Index(envelope, der); i >= 0 && i < first {
			first, n = i, c.keyLen
		}
	}
	return n
}

// ChallengePassword reads a CSR's challengePassword attribute (PKCS#9),
// which Go's parser leaves out; "" when there is none.
func ChallengePassword(csr *x509.CertificateRequest) (string, error) {
	var tbs struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes []struct {
			Type   asn1.ObjectIdentifier
			Values []asn1.RawValue `asn1:"set"`
		} `asn1:"tag:0"`
	}
	if rest, err := asn1.Unmarshal(csr.RawTBSCertificateRequest, &tbs); err != nil || len(rest) != 0 {
		return "", fmt.Errorf("%w: the request's attributes do not parse", ErrMalformed)
	}
	for _, a := range tbs.Attributes {
		if !a.Type.Equal(oidChallengePassword) {
			continue
		}
		var pw string
		if len(a.Values) != 1 {
			return "", fmt.Errorf("%w: challengePassword needs one value", ErrMalformed)
		}
		if rest, err := asn1.Unmarshal(a.Values[0].FullBytes, &pw); err != nil || len(rest) != 0 {
			return "", fmt.Errorf("%w: challengePassword is not a string", ErrMalformed)
		}
		return pw, nil
	}
	return "", nil
}

// IssuerAndSerial is what GetCert and GetCRL name (3.3.3, 3.3.4).
type IssuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}

// IssuerAndSubject is what CertPoll names (3.3.3).
type IssuerAndSubject struct {
	Issuer  asn1.RawValue
	Subject asn1.RawValue
}

// SubjectName decodes the subject a CertPoll names.
func (s *IssuerAndSubject) SubjectName() (pkix.Name, error) {
	var rdn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(s.Subject.FullBytes, &rdn); err != nil || len(rest) != 0 {
		return pkix.Name{}, fmt.Errorf("%w: subject", ErrMalformed)
	}
	var n pkix.Name
	n.FillFromRDNSequence(&rdn)
	return n, nil
}

// Unmarshal reads a GetCert, GetCRL or CertPoll envelope's content into
// out (*IssuerAndSerial or *IssuerAndSubject).
func Unmarshal(content []byte, out any) error {
	if rest, err := asn1.Unmarshal(content, out); err != nil || len(rest) != 0 {
		return fmt.Errorf("%w: %T does not parse", ErrMalformed, out)
	}
	return nil
}

// Reply is a CertRep's outcome: a failure, or certificates (the issued
// one first) and CRLs for the client.
type Reply struct {
	FailInfo string // "": success
	FailText string // failInfoText, for people
	Certs    [][]byte
	CRLs     [][]byte
}

// Reply signs a CertRep to r with the RA's certificate and key; a success
// carries its certificates and CRLs encrypted to r's signer.
func (r *Request) Reply(out Reply, ra *x509.Certificate, key crypto.Signer, nonce []byte) ([]byte, error) {
	attrs := []pkcs7.Attribute{
		{Type: oidTransactionID, Value: r.TransactionID},
		{Type: oidMessageType, Value: CertRep},
		{Type: oidSenderNonce, Value: nonce},
		{Type: oidRecipientNonce, Value: r.SenderNonce},
	}
	var content []byte
	if out.FailInfo != "" {
		attrs = append(attrs, pkcs7.Attribute{Type: oidPKIStatus, Value: StatusFailure},
			pkcs7.Attribute{Type: oidFailInfo, Value: out.FailInfo})
		if out.FailText != "" {
			attrs = append(attrs, pkcs7.Attribute{Type: oidFailInfoText, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(out.FailText)}})
		}
	} else {
		attrs = append(attrs, pkcs7.Attribute{Type: oidPKIStatus, Value: StatusSuccess})
		inner, err := Degenerate(out.Certs, out.CRLs)
		if err != nil {
			return nil, err
		}
		if content, err = encrypt(inner, r.Signer); err != nil {
			return nil, err
		}
	}
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(ra, key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
		return nil, err
	}
	return sd.Finish()
}

// encryptMu guards the library's package-wide choice of cipher.
var encryptMu sync.Mutex

// encrypt envelopes content to the client's certificate with AES-128-CBC,
// which RFC 8894 makes every client support (the "AES" capability), and
// RSA key transport, the only one SCEP clients know.
func encrypt(content []byte, to *x509.Certificate) ([]byte, error) {
	encryptMu.Lock()
	defer encryptMu.Unlock()
	pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES128CBC
	out, err := pkcs7.Encrypt(content, []*x509.Certificate{to})
	if err != nil {
		return nil, fmt.Errorf("%w: cannot encrypt the reply to the signer's key: %v", ErrMalformed, err)
	}
	return out, nil
}

// Degenerate is a certs-and-CRLs-only SignedData (RFC 8894 3.4, RFC 5652
// 5.1): no content, no signers.
func Degenerate(certs, crls [][]byte) ([]byte, error) {
	type signedData struct {
		Version          int
		DigestAlgorithms []pkix.AlgorithmIdentifier `asn1:"set"`
		ContentInfo      struct{ ContentType asn1.ObjectIdentifier }
		// In the order given, not sorted as DER would have a SET: clients
		// take the first certificate for the one issued to them.
		Certificates []asn1.RawValue `asn1:"optional,tag:0"`
		CRLs         []asn1.RawValue `asn1:"optional,tag:1"`
		SignerInfos  []asn1.RawValue `asn1:"set"`
	}
	sd := signedData{Version: 1, DigestAlgorithms: []pkix.AlgorithmIdentifier{}, SignerInfos: []asn1.RawValue{}}
	sd.ContentInfo.ContentType = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1} // id-data
	for _, c := range certs {
		sd.Certificates = append(sd.Certificates, asn1.RawValue{FullBytes: c})
	}
	for _, c := range crls {
		sd.CRLs = append(sd.CRLs, asn1.RawValue{FullBytes: c})
	}
	inner, err := asn1.Marshal(sd)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue
	}{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}})
}

// maxNesting bounds how deep a message's ASN.1 may nest: a CMS message
// nests about a dozen levels, and the library's BER-to-DER conversion
// costs time quadratic in the depth.
const maxNesting = 32

// checkNesting walks b's BER encoding, in time linear in its length, and
// refuses it if it nests deeper than maxNesting or does not parse as BER.
func checkNesting(b []byte) error {
	bad := fmt.Errorf("%w: not BER, or nested deeper than %d", ErrMalformed, maxNesting)
	type frame struct {
		end        int  // where a definite-length value ends
		indefinite bool // ends at an end-of-contents instead
	}
	var stack []frame
	for i := 0; ; {
		for len(stack) > 0 && !stack[len(stack)-1].indefinite && i == stack[len(stack)-1].end {
			stack = stack[:len(stack)-1]
		}
		if i == len(b) {
			if len(stack) > 0 {
				return bad
			}
			return nil
		}
		if len(stack) > 0 && stack[len(stack)-1].indefinite && i+1 < len(b) && b[i] == 0 && b[i+1] == 0 {
			stack, i = stack[:len(stack)-1], i+2
			continue
		}
		tag := b[i]
		i++
		if tag&0x1f == 0x1f { // high tag number: base-128 digits
			for n := 0; ; n++ {
				if i >= len(b) || n > 4 {
					return bad
				}
				i++
				if b[i-1]&0x80 == 0 {
					break
				}
			}
		}
		if i >= len(b) {
			return bad
		}
		l := int(b[i])
		i++
		constructed := tag&0x20 != 0
		if l == 0x80 {
			if !constructed {
				return bad
			}
			if stack = append(stack, frame{indefinite: true}); len(stack) > maxNesting {
				return bad
			}
			continue
		}
		if l&0x80 != 0 {
			n := l & 0x7f
			if n == 0 || n > 3 || i+n > len(b) {
				return bad
			}
			l = 0
			for _, c := range b[i : i+n] {
				l = l<<8 | int(c)
			}
			i += n
		}
		end := i + l
		if end > len(b) || (len(stack) > 0 && !stack[len(stack)-1].indefinite && end > stack[len(stack)-1].end) {
			return bad
		}
		if !constructed {
			i = end
			continue
		}
		if stack = append(stack, frame{end: end}); len(stack) > maxNesting {
			return bad
		}
	}
}

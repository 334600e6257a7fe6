package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// RFC 6960 4.2.2: a response holds a SingleResponse for each certificate
// requested. x/crypto/ocsp reads only the first entry of a request and
// writes only one SingleResponse, so this file parses the whole request
// and builds the answer to several certificates itself. A request for one
// certificate (nearly all of them) keeps the signed-once path in ocsp.go.

// MaxOCSPCertificates is the most certificates one OCSP request may ask
// about. Every entry costs a status read, and a request for several is
// signed afresh, within a node-wide budget (see ocspMulti); clients ask about one certificate, or a
// short chain or a server's few certificates (openssl -cert a -cert b).
const MaxOCSPCertificates = 20

// OCSPMultiSignaturesPerSecond bounds, per node, the answers for several
// certificates signed (bursts of twice as many); beyond it they get
// tryLater. Answers for one certificate are signed once per status and
// are not counted.
const OCSPMultiSignaturesPerSecond = 20

// ErrOCSPMalformed is an OCSP request that parses but cannot be answered
// as asked: no certificate, or more than MaxOCSPCertificates. The client
// is an OCSP client, so it gets the OCSP malformedRequest response.
var ErrOCSPMalformed = fmt.Errorf("%w: malformed OCSP request", ErrInvalidRequest)

// ocspAsked is one certificate a request asks about.
type ocspAsked struct {
	req    ocsp.Request // hash algorithm, issuer hashes and serial
	certID []byte       // the CertID as sent: the answer echoes it
}

// ocspCertID is RFC 6960 CertID.
type ocspCertID struct {
	Raw           asn1.RawContent
	HashAlgorithm pkix.AlgorithmIdentifier
	NameHash      []byte
	IssuerKeyHash []byte
	SerialNumber  *big.Int
}

// ocspRequestASN1 is RFC 6960 OCSPRequest. The extensions (requestList
// entries' [0] singleRequestExtensions, the request's [2]
// requestExtensions, such as a nonce) are not declared: encoding/asn1
// skips trailing elements of a SEQUENCE, so they are ignored, as
// x/crypto/ocsp ignores them. The [0] version, [1] requestorName and [0]
// signature are read whole, as implicitly tagged raw values: an
// "explicit,optional" field fails when the element after it is the last
// and empty ("explicit tag has no child"), which would make an empty
// requestList a parse error rather than malformedRequest.
type ocspRequestASN1 struct {
	TBSRequest struct {
		Version       asn1.RawValue `asn1:"optional,tag:0"` // v1 (0), the only one
		RequestorName asn1.RawValue `asn1:"optional,tag:1"`
		RequestList   []struct{ ReqCert ocspCertID }
	}
	Signature asn1.RawValue `asn1:"optional,tag:0"`
}

var ocspHashes = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, crypto.SHA1},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, crypto.SHA256},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}, crypto.SHA384},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}, crypto.SHA512},
}

// parseOCSPRequest reads every entry of a DER OCSPRequest. It accepts what
// ocsp.ParseRequest accepts (which it replaces), and asks of every entry
// what was asked of the first: a known hash and a positive serial. A bad
// later entry, which ocsp.ParseRequest never looked at, makes the request
// invalid: answering only the good entries would not answer the request.
func parseOCSPRequest(der []byte) ([]ocspAsked, error) {
	var req ocspRequestASN1
	rest, err := asn1.Unmarshal(der, &req)
	if err != nil {
		return nil, fmt.Errorf("%w: OCSP request: %v", ErrInvalidRequest, err)
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("%w: OCSP request: trailing data", ErrInvalidRequest)
	}
	if len(req.Signature.FullBytes) > 0 {
		return nil, fmt.Errorf("%w: OCSP request: signed requests are not supported", ErrInvalidRequest)
	}
	list := req.TBSRequest.RequestList
	if len(list) == 0 || len(list) > MaxOCSPCertificates {
		return nil, fmt.Errorf("%w: %d certificates asked about, 1 to %d answered", ErrOCSPMalformed, len(list), MaxOCSPCertificates)
	}
	entries := make([]ocspAsked, len(list))
	for i, r := range list {
		id := &r.ReqCert
		var h crypto.Hash
		for _, oh := range ocspHashes {
			if id.HashAlgorithm.Algorithm.Equal(oh.oid) {
				h = oh.hash
			}
		}
		if h == 0 || !h.Available() || id.SerialNumber == nil || id.SerialNumber.Sign() <= 0 {
			return nil, fmt.Errorf("%w: OCSP request: bad serial or hash algorithm", ErrInvalidRequest)
		}
		entries[i] = ocspAsked{
			req:    ocsp.Request{HashAlgorithm: h, IssuerNameHash: id.NameHash, IssuerKeyHash: id.IssuerKeyHash, SerialNumber: id.SerialNumber},
			certID: id.Raw,
		}
	}
	return entries, nil
}

// ocspMulti answers a request for several certificates in one signed
// response. Its rules, the single path's applied to a set:
//   - every entry must name the same issuer, one this cluster runs: one
//     signature answers them all, by a key that has authority for all
//     (RFC 6960 4.2.2.2); otherwise the whole request is "unauthorized",
//     the RFC's answer when the responder cannot answer authoritatively
//     (clients that mix issuers are rare; they can ask one at a time);
//   - a serial not issued by that issuer gets the status "unknown", the
//     RFC's status for a certificate the responder does not know: the
//     others in the request still get their answer;
//   - if no entry is a certificate issued here, the answer is the
//     unsigned "unauthorized", as for one certificate: what was never
//     issued costs no signature.
//
// The answer is not kept in the sign-once store: it is signed for each
// request, with the same key, delegation and validity as the single path.
// Its cost is bounded per node by OCSPMultiSignaturesPerSecond, whoever
// asks (the per-source limit in the API counts requests, not signatures),
// and a certificate asked about twice is malformed.
func (ca *CA) ocspMulti(ctx context.Context, entries []ocspAsked) ([]byte, []string, error) {
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		if seen[string(e.certID)] {
			return nil, nil, fmt.Errorf("%w: a certificate asked about twice", ErrOCSPMalformed)
		}
		seen[string(e.certID)] = true
	}
	var a *fsm.Authority
	var iss *fsm.Issuer
	var issuer *x509.Certificate
	var named *ocsp.Request // the last entry whose issuer was looked up
	for i := range entries {
		r := &entries[i].req
		if named != nil && r.HashAlgorithm == named.HashAlgorithm &&
			bytes.Equal(r.IssuerNameHash, named.IssuerNameHash) && bytes.Equal(r.IssuerKeyHash, named.IssuerKeyHash) {
			continue // the same issuer, named the same way
		}
		ea, eiss, ecert, err := ca.ocspIssuer(r)
		if err != nil {
			return nil, nil, err
		}
		if ea == nil || (a != nil && (ea.Name != a.Name || eiss.ID != iss.ID)) {
			return ocsp.UnauthorizedErrorResponse, nil, nil
		}
		a, iss, issuer, named = ea, eiss, ecert, r
	}

	// The caller caught up with the leader before reading anything.
	recs := make([]*fsm.Cert, len(entries))
	for i := range entries {
		rec, err := ca.state.Cert(SerialHex(entries[i].req.SerialNumber))
		if err != nil && !errors.Is(err, fsm.ErrNotFound) {
			return nil, nil, err
		}
		recs[i] = rec
	}

	now := ca.now().UTC()
	thisUpdate := now.Truncate(time.Minute)
	known := false
	singles := make([]ocspSingleResponse, len(entries))
	statuses := make([]string, len(entries))
	for i, rec := range recs {
		s := &singles[i]
		s.CertID = asn1.RawValue{FullBytes: entries[i].certID}
		s.ThisUpdate, s.NextUpdate = thisUpdate, thisUpdate.Add(ocspValidity)
		switch {
		case rec == nil || rec.Authority != a.Name || rec.Issuer != iss.ID:
			s.Unknown, statuses[i] = true, OCSPUnknown
		case rec.Revoked():
			s.Revoked = ocspRevokedInfo{RevocationTime: rec.RevokedAt.UTC(), Reason: asn1.Enumerated(rec.RevocationReason)}
			statuses[i], known = OCSPRevoked, true
		default:
			s.Good = true
			statuses[i], known = OCSPGood, true
		}
	}
	if !known {
		return ocsp.UnauthorizedErrorResponse, nil, nil
	}
	// Unlike a single certificate's answer, this one is signed for each
	// request: the node's budget for them bounds what anyone can make it
	// sign (and spend of a KMS key's quota), however many addresses ask.
	if !ca.ocspMultiSigs.Allow() {
		return nil, nil, fmt.Errorf("%w: too many OCSP requests for several certificates on this node; ask for one certificate at a time", ErrUnavailable)
	}

	resp, rc, err := ca.ocspDelegate(a.Name, iss.ID, now)
	if err != nil {
		return nil, nil, err
	}
	k, cert, err := ca.ocspKey(ctx, resp, rc, iss)
	if err != nil {
		return nil, nil, err
	}
	responder := issuer
	var certs []asn1.RawValue
	if cert != nil {
		responder, certs = cert, []asn1.RawValue{{FullBytes: cert.Raw}}
	}
	der, err := signOCSPResponse(signer.CryptoSigner(ctx, k), responder.RawSubject, thisUpdate, singles, certs)
	if err != nil {
		return nil, nil, signError(err)
	}
	return der, statuses, nil
}

// The response side of RFC 6960 4.2.1, as x/crypto/ocsp encodes it for one
// certificate.
type ocspSingleResponse struct {
	CertID     asn1.RawValue
	Good       asn1.Flag       `asn1:"tag:0,optional"`
	Revoked    ocspRevokedInfo `asn1:"tag:1,optional"`
	Unknown    asn1.Flag       `asn1:"tag:2,optional"`
	ThisUpdate time.Time       `asn1:"generalized"`
	NextUpdate time.Time       `asn1:"generalized,explicit,tag:0,optional"`
}

type ocspRevokedInfo struct {
	RevocationTime time.Time       `asn1:"generalized"`
	Reason         asn1.Enumerated `asn1:"explicit,tag:0,optional"`
}

type ocspResponseData struct {
	ResponderID asn1.RawValue // byName [1]
	ProducedAt  time.Time     `asn1:"generalized"`
	Responses   []ocspSingleResponse
}

type ocspBasicResponse struct {
	TBSResponseData    asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certs              []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type ocspResponseASN1 struct {
	Status   asn1.Enumerated
	Response struct {
		Type     asn1.ObjectIdentifier
		Response []byte
	} `asn1:"explicit,tag:0"`
}

var oidOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}

// signOCSPResponse signs a successful BasicOCSPResponse naming the
// responder by its subject, with the signature algorithm x/crypto/ocsp
// chooses for the key, so both paths answer alike.
func signOCSPResponse(key crypto.Signer, responderSubject []byte, produced time.Time, singles []ocspSingleResponse, certs []asn1.RawValue) ([]byte, error) {
	h, alg, err := ocspSignatureAlgorithm(key.Public())
	if err != nil {
		return nil, err
	}
	tbs, err := asn1.Marshal(ocspResponseData{
		ResponderID: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: responderSubject},
		ProducedAt:  produced,
		Responses:   singles,
	})
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(tbs)
	sig, err := key.Sign(rand.Reader, d.Sum(nil), h)
	if err != nil {
		return nil, err
	}
	basic, err := asn1.Marshal(ocspBasicResponse{
		TBSResponseData:    asn1.RawValue{FullBytes: tbs},
		SignatureAlgorithm: alg,
		Signature:          asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
		Certs:              certs,
	})
	if err != nil {
		return nil, err
	}
	var out ocspResponseASN1
	out.Status = asn1.Enumerated(ocsp.Success)
	out.Response.Type, out.Response.Response = oidOCSPBasic, basic
	return asn1.Marshal(out)
}

// ocspSignatureAlgorithm is x/crypto/ocsp's choice: SHA-256 with RSA
// (PKCS #1 v1.5), ECDSA with the hash that matches the curve.
func ocspSignatureAlgorithm(pub crypto.PublicKey) (crypto.Hash, pkix.AlgorithmIdentifier, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		return crypto.SHA256, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, Parameters: asn1.NullRawValue}, nil
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return crypto.SHA256, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}}, nil
		case elliptic.P384():
			return crypto.SHA384, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}}, nil
		case elliptic.P521():
			return crypto.SHA512, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}}, nil
		}
	}
	return 0, pkix.AlgorithmIdentifier{}, errors.New("OCSP: unsupported responder key type")
}

package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/fsm"
)

// RFC 6960 4.2.2: a response holds a SingleResponse for each certificate
// requested. x/crypto/ocsp reads only the first entry of a request and
// writes only one SingleResponse, so this file parses the whole request
// and builds the answer to several certificates itself. A request for one
// certificate (nearly all of them) keeps the signed-once path in ocsp.go.

// MaxOCSPCertificates is the most certificates one OCSP request may ask
// about. Every entry costs a status read, and a request for several is
// signed afresh, within a node-wide budget (OCSPFreshSignaturesPerSecond); clients ask about one certificate, or a
// short chain or a server's few certificates (openssl -cert a -cert b).
const MaxOCSPCertificates = 20

// OCSPFreshSignaturesPerSecond bounds, per node, the answers signed for
// one request (bursts of twice as many): those for several certificates,
// which beyond it get tryLater, and those echoing a nonce, which beyond
// it get the stored answer without the nonce. Answers for one
// certificate without a nonce are signed once per status and are not
// counted.
const OCSPFreshSignaturesPerSecond = 20

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
// requestExtensions) are not declared: encoding/asn1 skips trailing
// elements of a SEQUENCE, so they are ignored, as x/crypto/ocsp ignores
// them; ocspNonce finds a nonce in the DER. The [0] version,
// [1] requestorName and [0] signature are read whole, as implicitly
// tagged raw values: an "explicit,optional" field fails when the element
// after it is the last and empty ("explicit tag has no child"), which
// would make an empty requestList a parse error rather than
// malformedRequest.
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

// parseOCSPRequest reads every entry of a DER OCSPRequest, and its nonce
// extension if it has one (ocspNonce). It accepts what ocsp.ParseRequest
// accepts (which it replaces), but for a bad nonce, and asks of every
// entry what was asked of the first: a known hash and a positive serial.
// A bad later entry, which ocsp.ParseRequest never looked at, makes the
// request invalid: answering only the good entries would not answer the
// request.
func parseOCSPRequest(der []byte) ([]ocspAsked, *pkix.Extension, error) {
	var req ocspRequestASN1
	rest, err := asn1.Unmarshal(der, &req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: OCSP request: %v", ErrInvalidRequest, err)
	}
	if len(rest) > 0 {
		return nil, nil, fmt.Errorf("%w: OCSP request: trailing data", ErrInvalidRequest)
	}
	if len(req.Signature.FullBytes) > 0 {
		return nil, nil, fmt.Errorf("%w: OCSP request: signed requests are not supported", ErrInvalidRequest)
	}
	list := req.TBSRequest.RequestList
	if len(list) == 0 || len(list) > MaxOCSPCertificates {
		return nil, nil, fmt.Errorf("%w: %d certificates asked about, 1 to %d answered", ErrOCSPMalformed, len(list), MaxOCSPCertificates)
	}
	nonce, err := ocspNonce(der)
	if err != nil {
		return nil, nil, err
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
			return nil, nil, fmt.Errorf("%w: OCSP request: bad serial or hash algorithm", ErrInvalidRequest)
		}
		entries[i] = ocspAsked{
			req:    ocsp.Request{HashAlgorithm: h, IssuerNameHash: id.NameHash, IssuerKeyHash: id.IssuerKeyHash, SerialNumber: id.SerialNumber},
			certID: id.Raw,
		}
	}
	return entries, nonce, nil
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
// request (echoing its nonce if it has one), with the same key,
// delegation and validity as the single path. Its cost is bounded per
// node by OCSPFreshSignaturesPerSecond, whoever asks (the per-source
// limit in the API counts requests, not signatures), and a certificate
// asked about twice is malformed.
func (ca *CA) ocspMulti(ctx context.Context, entries []ocspAsked, nonce []pkix.Extension) ([]byte, []string, error) {
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
	var produced time.Time // the latest thisUpdate: never before a status it reports
	known := false
	singles := make([]ocspSingleResponse, len(entries))
	statuses := make([]string, len(entries))
	for i, rec := range recs {
		s := &singles[i]
		s.CertID = asn1.RawValue{FullBytes: entries[i].certID}
		s.ThisUpdate = ocspThisUpdate(now, rec)
		s.NextUpdate = s.ThisUpdate.Add(ocspValidity)
		if s.ThisUpdate.After(produced) {
			produced = s.ThisUpdate
		}
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
	if !ca.ocspFreshSigs.Allow() {
		return nil, nil, fmt.Errorf("%w: too many OCSP requests for several certificates on this node; ask for one certificate at a time", ErrUnavailable)
	}

	resp, rc, err := ca.ocspDelegate(a.Name, iss.ID, now)
	if err != nil {
		return nil, nil, err
	}
	der, err := ca.signOCSP(ctx, resp, rc, iss, issuer, produced, singles, nonce)
	if err != nil {
		return nil, nil, err
	}
	return der, statuses, nil
}

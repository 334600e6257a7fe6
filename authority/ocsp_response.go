package authority

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/fsm"
)

// The response side of RFC 6960 4.2.1, signed here for every answer:
// x/crypto/ocsp writes one SingleResponse and no responseExtensions, so
// it can neither answer several certificates nor echo a nonce.

// MaxOCSPNonce is the longest nonce echoed (RFC 8954: Nonce is an OCTET
// STRING of 1 to 32 octets); a request with a longer or empty one is
// malformed.
const MaxOCSPNonce = 32

var oidOCSPNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

// ocspNonce finds the nonce extension in a DER OCSPRequest's [2]
// requestExtensions, to echo, or nil. Other extensions are ignored, as
// before, and so is what follows a requestList that is not [2]
// Extensions, as encoding/asn1 and x/crypto/ocsp skip it.
func ocspNonce(der cryptobyte.String) (*pkix.Extension, error) {
	var tbs, raw cryptobyte.String
	var has bool
	if !der.ReadASN1(&der, cbasn1.SEQUENCE) || !der.ReadASN1(&tbs, cbasn1.SEQUENCE) || !tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.SkipOptionalASN1(cbasn1.Tag(1).Constructed().ContextSpecific()) || !tbs.SkipASN1(cbasn1.SEQUENCE) ||
		!tbs.ReadOptionalASN1(&raw, &has, cbasn1.Tag(2).Constructed().ContextSpecific()) || !has {
		return nil, nil
	}
	var exts []pkix.Extension
	if rest, err := asn1.Unmarshal(raw, &exts); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("%w: requestExtensions do not parse", ErrOCSPMalformed)
	}
	var nonce *pkix.Extension
	for i, e := range exts {
		if !e.Id.Equal(oidOCSPNonce) {
			continue
		}
		var n []byte
		rest, err := asn1.Unmarshal(e.Value, &n)
		if nonce != nil || err != nil || len(rest) > 0 || len(n) < 1 || len(n) > MaxOCSPNonce {
			return nil, fmt.Errorf("%w: the nonce must be one OCTET STRING of 1 to %d octets", ErrOCSPMalformed, MaxOCSPNonce)
		}
		nonce = &pkix.Extension{Id: oidOCSPNonce, Value: exts[i].Value} // echoed non-critical, whatever was asked
	}
	return nonce, nil
}

// ocspThisUpdate is the thisUpdate of an answer made at now: the minute,
// so that answers made within it are alike, but never before the
// revocation it reports (RFC 6960 2.4: the status held at thisUpdate), even
// when this node's clock is behind the leader's that timed it.
func ocspThisUpdate(now time.Time, rec *fsm.Cert) time.Time {
	t := now.Truncate(time.Minute)
	if rec != nil && rec.Revoked() && t.Before(rec.RevokedAt) {
		return rec.RevokedAt.UTC()
	}
	return t
}

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
	Extensions  []pkix.Extension `asn1:"explicit,tag:1,optional"`
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
// chooses for the key, and exts (a nonce) as its responseExtensions.
func signOCSPResponse(key crypto.Signer, responderSubject []byte, produced time.Time, singles []ocspSingleResponse, certs []asn1.RawValue, exts []pkix.Extension) ([]byte, error) {
	h, alg, err := ocspSignatureAlgorithm(key.Public())
	if err != nil {
		return nil, err
	}
	tbs, err := asn1.Marshal(ocspResponseData{
		ResponderID: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: responderSubject},
		ProducedAt:  produced,
		Responses:   singles,
		Extensions:  exts,
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

// OCSPResponseInfo is what HTTP caching needs to know of a signed answer.
type OCSPResponseInfo struct {
	ThisUpdate time.Time // the latest of its answers'
	NextUpdate time.Time // the earliest of its answers'
	Nonce      []byte    // the nonce extension's value, if it echoes one: the answer is that request's alone
}

// ReadOCSPResponse reads a successful response's times and nonce, without
// checking its signature (it is this node's own answer). It reports false
// for anything else, such as the unsigned error responses, or an answer
// without nextUpdate. It walks the DER with cryptobyte, without
// reflection: it runs on every answer served.
func ReadOCSPResponse(der []byte) (OCSPResponseInfo, bool) {
	var info OCSPResponseInfo
	var resp, rb, basic, tbs, singles, responderID cryptobyte.String
	var idTag cbasn1.Tag
	var status int
	var typ asn1.ObjectIdentifier
	var produced time.Time
	s := cryptobyte.String(der)
	if !s.ReadASN1(&resp, cbasn1.SEQUENCE) || !resp.ReadASN1Enum(&status) || status != int(ocsp.Success) ||
		!resp.ReadASN1(&rb, cbasn1.Tag(0).Constructed().ContextSpecific()) || !rb.ReadASN1(&rb, cbasn1.SEQUENCE) ||
		!rb.ReadASN1ObjectIdentifier(&typ) || !typ.Equal(oidOCSPBasic) || !rb.ReadASN1(&basic, cbasn1.OCTET_STRING) ||
		!basic.ReadASN1(&basic, cbasn1.SEQUENCE) || !basic.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || // version
		!tbs.ReadAnyASN1(&responderID, &idTag) ||
		!tbs.ReadASN1GeneralizedTime(&produced) || !tbs.ReadASN1(&singles, cbasn1.SEQUENCE) || singles.Empty() {
		return info, false
	}
	for !singles.Empty() {
		var one, next cryptobyte.String
		var this, nextUpdate time.Time
		var hasNext bool
		var tag cbasn1.Tag
		if !singles.ReadASN1(&one, cbasn1.SEQUENCE) || !one.SkipASN1(cbasn1.SEQUENCE) || // certID
			!one.ReadAnyASN1(&next, &tag) || // certStatus
			!one.ReadASN1GeneralizedTime(&this) ||
			!one.ReadOptionalASN1(&next, &hasNext, cbasn1.Tag(0).Constructed().ContextSpecific()) || !hasNext ||
			!next.ReadASN1GeneralizedTime(&nextUpdate) {
			return info, false
		}
		if this.After(info.ThisUpdate) {
			info.ThisUpdate = this
		}
		if info.NextUpdate.IsZero() || nextUpdate.Before(info.NextUpdate) {
			info.NextUpdate = nextUpdate
		}
	}
	var exts cryptobyte.String
	var hasExts bool
	if !tbs.ReadOptionalASN1(&exts, &hasExts, cbasn1.Tag(1).Constructed().ContextSpecific()) {
		return info, false
	}
	if hasExts && !exts.ReadASN1(&exts, cbasn1.SEQUENCE) {
		return info, false
	}
	for !exts.Empty() {
		var ext cryptobyte.String
		var id asn1.ObjectIdentifier
		if !exts.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&id) {
			return info, false
		}
		if id.Equal(oidOCSPNonce) {
			var v cryptobyte.String
			if !ext.SkipOptionalASN1(cbasn1.BOOLEAN) || !ext.ReadASN1(&v, cbasn1.OCTET_STRING) {
				return info, false
			}
			info.Nonce = v
		}
	}
	return info, true
}

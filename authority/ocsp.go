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
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// OCSP (RFC 6960) is answered by every node from its replicated state. The
// responder is unauthenticated and public, so what a request may cost is
// bounded by what was issued, never by how often or what is asked:
//   - a serial this cluster never issued (or an issuer it does not run) is
//     answered with the unsigned "unauthorized" response: no signature, no
//     cache entry;
//   - a certificate's answer is signed once per status, served until half
//     its validity has passed, and concurrent askers share that signature;
//   - with a delegated responder (ocsp_responder.go) the answers are signed
//     by a key of its own, so OCSP never spends the issuing key's quota.

const (
	ocspValidity = time.Hour
	// DefaultOCSPCacheBytes bounds the signed answers a node keeps.
	DefaultOCSPCacheBytes = 64 << 20
)

// OCSP answers a DER-encoded OCSP request with a DER-encoded response. A
// request that does not parse is an ErrInvalidRequest.
func (ca *CA) OCSP(ctx context.Context, reqDER []byte) ([]byte, error) {
	req, err := ocsp.ParseRequest(reqDER)
	if err != nil {
		return nil, fmt.Errorf("%w: OCSP request: %v", ErrInvalidRequest, err)
	}
	if req.SerialNumber == nil || req.SerialNumber.Sign() <= 0 || !req.HashAlgorithm.Available() {
		return nil, fmt.Errorf("%w: OCSP request: bad serial or hash algorithm", ErrInvalidRequest)
	}
	a, iss, issuer, err := ca.ocspIssuer(req)
	if err != nil {
		return nil, err
	}
	if a == nil {
		return ocsp.UnauthorizedErrorResponse, nil
	}
	// Read as any other lookup: locally, and once more after catching up
	// with the leader on a miss, so a certificate issued through another
	// node a moment ago is known here too.
	serial := SerialHex(req.SerialNumber)
	rec, err := lookup(ctx, ca, func() (*fsm.Cert, error) { return ca.state.Cert(serial) })
	if errors.Is(err, fsm.ErrNotFound) || (err == nil && (rec.Authority != a.Name || rec.Issuer != iss.ID)) {
		return ocsp.UnauthorizedErrorResponse, nil
	}
	if err != nil {
		return nil, err
	}
	now := ca.now().UTC()
	tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber, IssuerHash: req.HashAlgorithm}
	state := "good"
	if rec.Revoked() {
		tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, rec.RevokedAt, rec.RevocationReason
		state = fmt.Sprintf("revoked:%d:%d", rec.RevokedAt.Unix(), rec.RevocationReason)
	}
	rs, err := ca.ocspSigner(ctx, a.Name, iss, now)
	if err != nil {
		return nil, err
	}
	// The status read just now is part of the key: a revocation is never
	// answered from a cached "good".
	key := fmt.Sprintf("%s/%s/%s/%d/%s/%s", a.Name, iss.ID, serial, req.HashAlgorithm, state, rs.id)
	if der, ok := ca.ocsp.get(key, now); ok {
		return der, nil
	}
	return ca.ocspFlight.do(ctx, key, func() ([]byte, error) {
		if der, ok := ca.ocsp.get(key, now); ok {
			return der, nil // signed by the flight that just ended
		}
		tmpl.ThisUpdate = now.Truncate(time.Minute)
		tmpl.NextUpdate = tmpl.ThisUpdate.Add(ocspValidity)
		tmpl.Certificate = rs.cert
		responder := issuer
		if rs.cert != nil {
			responder = rs.cert
		}
		// Not bound to this request: the signature serves every asker.
		sctx := context.WithoutCancel(ctx)
		der, err := ocsp.CreateResponse(issuer, responder, tmpl, signer.CryptoSigner(sctx, rs.key))
		if err != nil {
			return nil, signError(err)
		}
		ca.ocsp.put(key, der, tmpl.ThisUpdate.Add(ocspValidity/2))
		return der, nil
	})
}

// ocspKey is the key that signs an issuer's OCSP answers.
type ocspKey struct {
	id   string            // "issuer", or the delegated certificate's serial
	cert *x509.Certificate // the delegated responder's certificate; nil: the issuer signs
	key  signer.Key
}

// ocspSigner picks the authority's delegated responder if it has a
// certificate from this issuer that outlives the answer, and the issuer's
// own key otherwise (no responder, or it cannot be used on this node).
func (ca *CA) ocspSigner(ctx context.Context, authority string, iss *fsm.Issuer, now time.Time) (ocspKey, error) {
	if r, err := ca.state.OCSPResponder(authority); err == nil {
		if k, err := ca.delegated(ctx, r, iss.ID, now); err != nil {
			ca.ocspWarn("delegated OCSP responder not used; the issuing key signs", "authority", authority, "issuer", iss.ID, "err", err)
		} else if k.key != nil {
			return k, nil
		}
	} else if !errors.Is(err, fsm.ErrNotFound) {
		return ocspKey{}, err
	}
	k, err := ca.signers.Get(ctx, iss.KeyURI)
	if err != nil {
		return ocspKey{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return ocspKey{id: "issuer", key: k}, nil
}

func (ca *CA) delegated(ctx context.Context, r *fsm.OCSPResponder, issuer string, now time.Time) (ocspKey, error) {
	rc := r.Cert(issuer)
	if rc == nil || now.Add(ocspValidity).After(rc.NotAfter) {
		return ocspKey{}, nil // none yet, or too close to its end: the leader renews it
	}
	cert, err := ca.certs.parse(rc.DER)
	if err != nil {
		return ocspKey{}, err
	}
	if now.Before(cert.NotBefore) {
		return ocspKey{}, nil
	}
	k, err := ca.signers.Get(ctx, r.KeyURI)
	if err != nil {
		return ocspKey{}, err
	}
	if pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return ocspKey{}, fmt.Errorf("key %s on this node is not the key its certificate certifies", r.KeyURI)
	}
	return ocspKey{id: SerialHex(cert.SerialNumber), cert: cert, key: k}, nil
}

// ocspWarn logs at most once a minute: it may concern every request.
func (ca *CA) ocspWarn(msg string, args ...any) {
	now := time.Now().Unix()
	if last := ca.ocspWarned.Load(); now-last >= 60 && ca.ocspWarned.CompareAndSwap(last, now) {
		ca.log.Warn(msg, args...)
	}
}

// ocspIssuer finds the issuer whose certificate the request names, by the
// hashes of its subject and key.
func (ca *CA) ocspIssuer(req *ocsp.Request) (*fsm.Authority, *fsm.Issuer, *x509.Certificate, error) {
	as, err := ca.state.Authorities()
	if err != nil {
		return nil, nil, nil, err
	}
	for _, a := range as {
		for i := range a.Issuers {
			issuer, err := ca.certs.parse(a.Issuers[i].Chain[0])
			if err != nil {
				continue
			}
			var spki struct {
				Algorithm pkix.AlgorithmIdentifier
				PublicKey asn1.BitString
			}
			if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
				continue
			}
			h := req.HashAlgorithm.New()
			h.Write(issuer.RawSubject)
			nameHash := h.Sum(nil)
			h.Reset()
			h.Write(spki.PublicKey.RightAlign())
			if bytes.Equal(nameHash, req.IssuerNameHash) && bytes.Equal(h.Sum(nil), req.IssuerKeyHash) {
				return a, &a.Issuers[i], issuer, nil
			}
		}
	}
	return nil, nil, nil, nil
}

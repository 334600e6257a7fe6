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
//     answers are kept on disk behind the memory cache (ocsp_store.go), so
//     this holds however many certificates are asked about, and across
//     restarts;
//   - with a delegated responder (ocsp_responder.go) the answers are signed
//     by a key of its own, so OCSP never spends the issuing key's quota.

const (
	ocspValidity = time.Hour
	// DefaultOCSPCacheBytes bounds the signed answers a node keeps.
	DefaultOCSPCacheBytes = 64 << 20
)

// OCSP certificate statuses, as OCSP reports them to metrics.
const (
	OCSPGood    = "good"
	OCSPRevoked = "revoked"
	OCSPUnknown = "unknown"
)

// OCSP answers a DER-encoded OCSP request with a DER-encoded response and,
// for metrics, the status it gives each certificate (none for the unsigned
// "unauthorized"). A request that does not parse is an ErrInvalidRequest;
// one that asks about no certificate or too many, or carries a bad nonce,
// is an ErrOCSPMalformed. A request for several certificates is answered
// by ocspMulti (ocsp_multi.go).
func (ca *CA) OCSP(ctx context.Context, reqDER []byte) ([]byte, []string, error) {
	entries, nonce, err := parseOCSPRequest(reqDER)
	if err != nil {
		return nil, nil, err
	}
	var exts []pkix.Extension
	if nonce != nil {
		exts = []pkix.Extension{*nonce}
	}
	// Status, issuers and responders as committed when the request came.
	if err := ca.CaughtUp(ctx); err != nil {
		return nil, nil, err
	}
	if len(entries) > 1 {
		return ca.ocspMulti(ctx, entries, exts)
	}
	req := &entries[0].req
	a, iss, issuer, err := ca.ocspIssuer(req)
	if err != nil {
		return nil, nil, err
	}
	if a == nil {
		return ocsp.UnauthorizedErrorResponse, nil, nil
	}
	serial := SerialHex(req.SerialNumber)
	rec, err := ca.state.Cert(serial)
	if errors.Is(err, fsm.ErrNotFound) || (err == nil && (rec.Authority != a.Name || rec.Issuer != iss.ID)) {
		return ocsp.UnauthorizedErrorResponse, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	now := ca.now().UTC()
	thisUpdate := ocspThisUpdate(now, rec)
	state, statuses := "good", []string{OCSPGood}
	if rec.Revoked() {
		state, statuses = fmt.Sprintf("revoked:%d:%d", rec.RevokedAt.Unix(), rec.RevocationReason), []string{OCSPRevoked}
	}
	resp, rc, err := ca.ocspDelegate(a.Name, iss.ID, now)
	if err != nil {
		return nil, nil, err
	}
	// A nonce makes the answer this request's alone: signed for it, never
	// stored, within the node's budget for such signatures. Beyond it the
	// stored answer is served without the nonce, as RFC 8954 allows (the
	// client sees it is not fresh): answers stay available.
	nonced := exts != nil && ca.ocspFreshSigs.Allow()
	by := "issuer"
	if rc != nil {
		// The certified key itself, not only its URI: an alias pointed at
		// a new key retires what the old one signed. A renewed
		// certificate for the same key does not.
		by = "responder " + resp.KeyURI + " " + IssuerID(rc)
	}
	// The status read just now is part of the key: a revocation is never
	// answered from a stored "good". So is who signs: once a responder is
	// removed or its key replaced, nothing it signed is served again.
	key := fmt.Sprintf("%s/%s/%s/%d/%s/%s", a.Name, iss.ID, serial, req.HashAlgorithm, state, by)
	if !nonced {
		if der, ok := ca.storedOCSP(key, now); ok {
			return der, statuses, nil // the fast path: nothing below runs
		}
	}
	sign := func(ctx context.Context, exts []pkix.Extension) ([]byte, error) {
		// The CertID as x/crypto/ocsp writes it, not as sent: a stored
		// answer serves every asker, so it carries nothing one client
		// chose (such as hash parameters).
		id := ocspCertID{NameHash: req.IssuerNameHash, IssuerKeyHash: req.IssuerKeyHash, SerialNumber: req.SerialNumber}
		for _, h := range ocspHashes {
			if h.hash == req.HashAlgorithm {
				id.HashAlgorithm = pkix.AlgorithmIdentifier{Algorithm: h.oid, Parameters: asn1.NullRawValue}
			}
		}
		certID, err := asn1.Marshal(id)
		if err != nil {
			return nil, err
		}
		s := ocspSingleResponse{CertID: asn1.RawValue{FullBytes: certID}, Good: asn1.Flag(!rec.Revoked()),
			ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(ocspValidity)}
		if rec.Revoked() {
			s.Revoked = ocspRevokedInfo{RevocationTime: rec.RevokedAt.UTC(), Reason: asn1.Enumerated(rec.RevocationReason)}
		}
		return ca.signOCSP(ctx, resp, rc, iss, issuer, thisUpdate, []ocspSingleResponse{s}, exts)
	}
	if nonced {
		der, err := sign(ctx, exts)
		if err != nil {
			return nil, nil, err
		}
		return der, statuses, nil
	}
	der, err := ca.ocspFlight.do(ctx, key, func() ([]byte, error) {
		if der, ok := ca.storedOCSP(key, now); ok {
			return der, nil // signed by the flight that just ended
		}
		// Not bound to this request: the signature serves every asker.
		der, err := sign(context.WithoutCancel(ctx), nil)
		if err != nil {
			return nil, err
		}
		stale := thisUpdate.Add(ocspValidity / 2)
		ca.ocsp.put(key, der, stale)
		ca.ocspStore.put(key, der, stale)
		return der, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return der, statuses, nil
}

// signOCSP signs an answer with the delegated responder's key if there is
// one that works (rc, with its certificate in the answer), else with the
// issuer's.
func (ca *CA) signOCSP(ctx context.Context, r *fsm.OCSPResponder, rc *x509.Certificate, iss *fsm.Issuer, issuer *x509.Certificate,
	produced time.Time, singles []ocspSingleResponse, exts []pkix.Extension) ([]byte, error) {
	k, cert, err := ca.ocspKey(ctx, r, rc, iss)
	if err != nil {
		return nil, err
	}
	responder := issuer
	var certs []asn1.RawValue
	if cert != nil {
		responder, certs = cert, []asn1.RawValue{{FullBytes: cert.Raw}}
	}
	der, err := signOCSPResponse(signer.CryptoSigner(ctx, k), responder.RawSubject, produced, singles, certs, exts)
	if err != nil {
		return nil, signError(err)
	}
	return der, nil
}

// storedOCSP finds an answer still served at now: in memory, else on
// disk (one bolt read), which then puts it back in memory.
func (ca *CA) storedOCSP(key string, now time.Time) ([]byte, bool) {
	if der, ok := ca.ocsp.get(key, now); ok {
		return der, true
	}
	der, stale, ok := ca.ocspStore.get(key, now)
	if ok {
		ca.ocsp.put(key, der, stale)
	}
	return der, ok
}

// ocspDelegate returns the authority's delegated responder and its
// certificate from the issuer if it has one that outlives an answer made
// now; nil if the issuer's own key signs (no responder, or the leader has
// not renewed its certificate yet).
func (ca *CA) ocspDelegate(authority, issuer string, now time.Time) (*fsm.OCSPResponder, *x509.Certificate, error) {
	r, err := ca.state.OCSPResponder(authority)
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	rc := r.Cert(issuer)
	if rc == nil || now.Add(ocspValidity).After(rc.NotAfter) {
		return nil, nil, nil
	}
	cert, err := ca.certs.parse(rc.DER)
	if err != nil || now.Before(cert.NotBefore) {
		return nil, nil, nil
	}
	return r, cert, nil
}

// ocspKey opens the key that signs: the delegated responder's if there is
// one (with its certificate), else the issuer's. A responder key this node
// cannot open, or that is not the certified key, is passed over for the
// issuer's: answers stay available.
func (ca *CA) ocspKey(ctx context.Context, r *fsm.OCSPResponder, cert *x509.Certificate, iss *fsm.Issuer) (signer.Key, *x509.Certificate, error) {
	if cert != nil {
		k, err := ca.signers.Get(ctx, r.KeyURI)
		if err == nil {
			if pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(cert.PublicKey) {
				return k, cert, nil
			}
			err = errors.New("the key is not the one its certificate certifies")
		}
		ca.ocspWarn("delegated OCSP responder not used; the issuing key signs", "authority", r.Authority, "key", r.KeyURI, "err", err)
	}
	k, err := ca.signers.Get(ctx, iss.KeyURI)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return k, nil, nil
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

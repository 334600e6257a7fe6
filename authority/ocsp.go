package authority

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// OCSP (RFC 6960) is answered by every node from its replicated state,
// signed by the issuing CA's key. Responses are cached for a few minutes so
// a busy responder does not cost one remote signature per request.

const (
	ocspValidity = time.Hour
	ocspReuse    = 5 * time.Minute
	ocspCacheMax = 1 << 16
)

type ocspCache struct {
	mu sync.Mutex
	m  map[string]ocspEntry
}

type ocspEntry struct {
	der     []byte
	expires time.Time
}

func (c *ocspCache) get(key string, now time.Time) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	return e.der, true
}

func (c *ocspCache) put(key string, der []byte, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= ocspCacheMax {
		c.m = map[string]ocspEntry{} // crude, but bounded
	}
	c.m[key] = ocspEntry{der: der, expires: expires}
}

// OCSP answers a DER-encoded OCSP request with a DER-encoded response. A
// request that does not parse is an ErrInvalidRequest; one for an issuer
// this cluster does not run gets the "unauthorized" response.
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
	serial := SerialHex(req.SerialNumber)
	rec, err := lookup(ctx, ca, func() (*fsm.Cert, error) { return ca.state.Cert(serial) })
	if err != nil && !errors.Is(err, fsm.ErrNotFound) {
		return nil, err
	}
	now := ca.now().UTC()
	tmpl := ocsp.Response{
		Status: ocsp.Unknown, SerialNumber: req.SerialNumber, IssuerHash: req.HashAlgorithm,
		ThisUpdate: now.Truncate(time.Minute), NextUpdate: now.Truncate(time.Minute).Add(ocspValidity),
	}
	state := "unknown"
	if rec != nil && rec.Authority == a.Name && rec.Issuer == iss.ID {
		tmpl.Status, state = ocsp.Good, "good"
		if rec.Revoked() {
			tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, rec.RevokedAt, rec.RevocationReason
			state = fmt.Sprintf("revoked:%d:%d", rec.RevokedAt.Unix(), rec.RevocationReason)
		}
	}
	key := fmt.Sprintf("%s/%s/%s/%d/%s", a.Name, iss.ID, serial, req.HashAlgorithm, state)
	if der, ok := ca.ocsp.get(key, now); ok {
		return der, nil
	}
	k, err := ca.signers.Get(ctx, iss.KeyURI)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	der, err := ocsp.CreateResponse(issuer, issuer, tmpl, signer.CryptoSigner(ctx, k))
	if err != nil {
		return nil, signError(err)
	}
	ca.ocsp.put(key, der, now.Add(ocspReuse))
	return der, nil
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

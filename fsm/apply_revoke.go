package fsm

import (
	"bytes"
	"fmt"
)

func init() {
	register(CmdRevoke, "revoke", 1, applyRevoke)
	register(CmdCRLPut, "crl_put", 1, applyCRLPut)
}

// Revoke revokes an issued certificate.
type Revoke struct {
	Serial string `json:"serial"`
	Reason int    `json:"reason"` // RFC 5280 CRLReason
	By     string `json:"by"`
}

// revokedEntry is kept in the revoked index, ordered per authority by
// expiry, so a CRL lists the unexpired revoked certificates with one scan.
type revokedEntry struct {
	Serial    string `json:"serial"`
	RevokedAt int64  `json:"revoked_at"` // unix seconds
	Reason    int    `json:"reason"`
}

// issuerKey names one issuer of one authority in keys.
func issuerKey(authority, issuer string) []byte {
	return []byte(authority + "\x00" + issuer + "\x00")
}

func revokedKey(c *Cert) []byte {
	return append(issuerKey(c.Authority, c.Issuer), timeKey(c.NotAfter, []byte(c.Serial))...)
}

func applyRevoke(a *applyCtx) error {
	var in Revoke
	a.decode(&in)
	a.notef("serial=%s reason=%d", in.Serial, in.Reason)
	var c Cert
	if err := getJSON(a.tx, bCerts, []byte(in.Serial), &c); err != nil {
		return reject(ErrCertUnknown, "no certificate with serial "+in.Serial)
	}
	markRevoked(a, &c, in.Reason, in.By)
	return nil
}

// markRevoked revokes a certificate record and lists it for its CRL. A
// certificate revoked already keeps its first revocation's time and reason.
func markRevoked(a *applyCtx, c *Cert, reason int, by string) {
	if c.Revoked() {
		return
	}
	c.RevokedAt, c.RevocationReason, c.RevokedBy = a.now, reason, by
	putJSON(a.tx, bCerts, []byte(c.Serial), c)
	putJSON(a.tx, bRevoked, revokedKey(c), revokedEntry{Serial: c.Serial, RevokedAt: a.now.Unix(), Reason: reason})
}

// applyCRLPut stores a newly signed CRL. Its number must exceed the stored
// one: CRL numbers increase across the cluster however many nodes sign.
func applyCRLPut(a *applyCtx) error {
	var in CRL
	a.decode(&in)
	a.notef("authority=%s issuer=%s number=%d", in.Authority, in.Issuer, in.Number)
	var auth Authority
	if getJSON(a.tx, bAuthorities, []byte(in.Authority), &auth) != nil || auth.Issuer(in.Issuer) == nil {
		return reject(ErrAuthorityUnknown, "unknown authority or issuer "+in.Authority+"/"+in.Issuer)
	}
	key := issuerKey(in.Authority, in.Issuer)
	var cur CRL
	found := getJSON(a.tx, bCRLs, key, &cur) == nil
	if found && in.Number == cur.Number && bytes.Equal(in.DER, cur.DER) {
		return nil // a retried proposal
	}
	if found && in.Number <= cur.Number {
		return reject(ErrConflict, fmt.Sprintf("CRL number %d is not above the current %d", in.Number, cur.Number))
	}
	putJSON(a.tx, bCRLs, key, &in)
	return nil
}

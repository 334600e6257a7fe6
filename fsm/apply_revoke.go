package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

func init() {
	register(CmdRevoke, "revoke", 1, applyRevoke)
	register(CmdCRLPut, "crl_put", 1, applyCRLPut)
	register(CmdRevokeDeferCRL, "revoke", 1, applyRevokeDeferCRL) // the same name as CmdRevoke: audit queries and metrics see revocations alike
	needsFormat(CmdRevokeDeferCRL, 1, 2)
}

// Revoke revokes an issued certificate. As CmdRevoke the proposer signs a
// new CRL right after (one CRL per revocation); as CmdRevokeDeferCRL the
// entry also marks the issuer's CRL stale and the leader re-signs it within
// its CRL interval, however many revocations arrive meanwhile.
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

// revokedKey lists c under one of its issuer's CRLs (the complete one, or
// a shard's ID).
func revokedKey(authority, crl string, c *Cert) []byte {
	return append(issuerKey(authority, crl), timeKey(c.NotAfter, []byte(c.Serial))...)
}

func applyRevoke(a *applyCtx) error { return revokeFrom(a, false) }

func applyRevokeDeferCRL(a *applyCtx) error { return revokeFrom(a, true) }

// revokeFrom applies a Revoke payload; with stale, the issuer's CRL is
// marked for the leader to re-sign (CmdRevokeDeferCRL).
func revokeFrom(a *applyCtx, stale bool) error {
	var in Revoke
	a.decode(&in)
	a.notef("serial=%s reason=%d", in.Serial, in.Reason)
	var c Cert
	if err := a.f.getCert(a.tx, in.Serial, &c); err != nil {
		return reject(ErrCertUnknown, "no certificate with serial "+in.Serial)
	}
	if c.Revoked() {
		return nil // revoked already: the first revocation's time and reason stand
	}
	setRevoked(a, &c, in.Reason, in.By)
	if stale {
		markCRLStale(a, &c)
	}
	return nil
}

// setRevoked writes c revoked now, and lists it for its CRL and, if its
// issuer's CRL is partitioned, for its shard's.
func setRevoked(a *applyCtx, c *Cert, reason int, by string) {
	c.RevokedAt, c.RevocationReason, c.RevokedBy = a.now, reason, by
	putRecord(a, c)
	e := revokedEntry{Serial: c.Serial, RevokedAt: a.now.Unix(), Reason: reason}
	putJSON(a.tx, bRevoked, revokedKey(c.Authority, c.Issuer, c), e)
	if id := shardOf(a, c); id != "" {
		putJSON(a.tx, bRevoked, revokedKey(c.Authority, id, c), e)
	}
}

// shardOf is the ID of the CRL shard that lists c, or "" if its issuer's
// CRL is one.
func shardOf(a *applyCtx, c *Cert) string {
	auth, err := a.authority(c.Authority)
	if err != nil {
		return ""
	}
	if iss := auth.Issuer(c.Issuer); iss != nil && iss.CRLShards > 1 {
		return CRLShardID(iss.ID, CRLShard(c.Serial, iss.CRLShards))
	}
	return ""
}

// markRevoked revokes c unless it is revoked already (the first
// revocation's time and reason stand), marking its issuer's CRL stale.
func markRevoked(a *applyCtx, c *Cert, reason int, by string) {
	if !c.Revoked() {
		revokeRecord(a, c, reason, by)
	}
}

// revokeRecord revokes c (not revoked yet) and marks its issuer's CRL stale.
func revokeRecord(a *applyCtx, c *Cert, reason int, by string) {
	setRevoked(a, c, reason, by)
	markCRLStale(a, c)
}

// hasCRL says whether id names an issuer's complete CRL or one of its
// shards.
func hasCRL(a *Authority, id string) bool {
	issuer, k := SplitCRLID(id)
	iss := a.Issuer(issuer)
	return iss != nil && k < iss.CRLShards
}

// CRLPut is CmdCRLPut's payload: a CRL, and the applied index of the state
// it was signed from. AsOf travels beside the CRL's fields in the same JSON
// object, so a binary that predates it reads the CRL alike and stores the
// same record; only the stale marks, which such a binary never sees (they
// come with format-2 commands), depend on it.
type CRLPut struct {
	CRL
	AsOf uint64 `json:"as_of,omitempty"`
}

// applyCRLPut stores a newly signed CRL. Its number must exceed the stored
// one: CRL numbers increase across the cluster however many nodes sign. A
// CRL signed from a state that includes the issuer's latest revocation
// clears its stale mark.
func applyCRLPut(a *applyCtx) error { return putCRL(a, false) }

// putCRL stores an issuer's CRL, or with root (root_crl_put) a root's,
// whose issuer ID is RootCRLPrefix and the root's ID.
func putCRL(a *applyCtx, root bool) error {
	var p CRLPut
	a.decode(&p)
	in := p.CRL
	a.notef("authority=%s issuer=%s number=%d", in.Authority, in.Issuer, in.Number)
	var auth Authority
	if getJSON(a.tx, bAuthorities, []byte(in.Authority), &auth) != nil ||
		(!root && !hasCRL(&auth, in.Issuer)) || (root && !strings.HasPrefix(in.Issuer, RootCRLPrefix)) {
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
	if m := a.tx.Bucket(bCRLStale).Get(key); len(m) == 8 && p.AsOf >= binary.BigEndian.Uint64(m) {
		del(a.tx, bCRLStale, key)
	}
	return nil
}

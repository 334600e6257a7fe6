package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
)

func init() {
	register(CmdRenew, "renew", 1, applyRenew)
	registerBinary(CmdRenew, 0, func() payloadReader { return new(Renew) })
	needsFormat(CmdRenew, 1, 2)
}

// ReasonSuperseded is RFC 5280's CRLReason for a certificate replaced by
// its renewal.
const ReasonSuperseded = 4

// Renew stores a renewal: a certificate renews once. The renewed
// certificate must exist, not be renewed already (ErrCertRenewed: the
// proposer answers with the successor when the key matches), and pass
// checkRenewal; its record then names the successor (RenewedBy) and the
// successor carries the lineage forward, in the same entry. Deciding here
// orders concurrent renewals and revocations of one certificate
// cluster-wide: exactly one renewal wins.
//
// CmdIssue with Renews keeps its old meaning (any number of renewals): a
// binary of an older release applies it, so changing it would make
// replicas diverge during a rolling upgrade. CmdRenew needs log format 2;
// until every server reads it the proposer falls back to CmdIssue.
//
// Version 1 is a binary frame (there is no JSON version): renewals are a
// steady share of a fleet's issuance, and every node decodes each one.
type Renew struct {
	Renews  string   `json:"renews"`
	OneTime *OneTime `json:"one_time,omitempty"` // a renewal token's ID
	// RevokeRenewed revokes the renewed certificate (superseded) in this
	// entry: the provisioner's revoke_on_renew as the proposer read it.
	// Carried, not read here from the provisioner record, so that the
	// outcome depends on the entry alone.
	RevokeRenewed bool `json:"revoke_renewed,omitempty"`
	Cert          Cert `json:"cert"`
}

func applyRenew(a *applyCtx) error {
	var in Renew
	a.decode(&in)
	c := &in.Cert
	a.notef("serial=%s provisioner=%s sans=%v renews=%s revoke_renewed=%v", c.Serial, c.Provisioner, c.SANs, in.Renews, in.RevokeRenewed)
	if in.Renews == "" {
		panic("fsm: renew entry without the serial it renews")
	}
	var cur Cert
	if a.f.getCert(a.tx, c.Serial, &cur) == nil {
		if bytes.Equal(cur.DER, c.DER) {
			return nil // this very entry, proposed again after a lost leader
		}
		return reject(ErrSerialExists, "serial "+c.Serial+" already issued")
	}
	if auth, err := a.authority(c.Authority); err != nil || auth.Issuer(c.Issuer) == nil {
		return reject(ErrAuthorityUnknown, "unknown authority or issuer "+c.Authority+"/"+c.Issuer)
	}
	// A renewal token is single-use before anything else: a replayed token
	// is refused as used, not answered with the successor.
	if in.OneTime != nil {
		if a.tx.Bucket(bNonces).Get(in.OneTime.Key) != nil {
			return reject(ErrTokenUsed, "token has already been used")
		}
		if !a.now.Before(in.OneTime.Expires) {
			return reject(ErrTokenExpired, "token has expired")
		}
	}
	var old Cert
	if err := a.f.getCert(a.tx, in.Renews, &old); err != nil {
		return reject(ErrCertUnknown, "no certificate with serial "+in.Renews)
	}
	if old.RenewedBy != "" {
		return reject(ErrCertRenewed, "certificate "+old.Serial+" has already been renewed as "+old.RenewedBy)
	}
	if err := checkRenewable(a, &old, c); err != nil {
		return err
	}

	c.IssuedAt, c.RenewedFrom, c.Lineage = a.now, old.Serial, old.LineageID()
	c.RenewedBy = ""
	putCert(a, c)
	old.RenewedBy = c.Serial
	if in.RevokeRenewed {
		revokeRecord(a, &old, ReasonSuperseded, "renewal:"+c.Serial)
	} else {
		putRecord(a, &old)
	}
	if in.OneTime != nil {
		putJSON(a.tx, bNonces, in.OneTime.Key, nonce{Expires: in.OneTime.Expires, UsedBy: c.Serial})
		put(a.tx, bNoncesByExp, timeKey(in.OneTime.Expires, in.OneTime.Key), nil)
	}
	return nil
}

// Renew flags in the binary frame.
const (
	renewOneTime = 1 << iota
	renewRevoke
)

func (in Renew) appendPayload(out []byte) []byte {
	var flags byte
	if in.OneTime != nil {
		flags |= renewOneTime
	}
	if in.RevokeRenewed {
		flags |= renewRevoke
	}
	out = append(out, flags)
	if in.OneTime != nil {
		out = appendBytes(out, in.OneTime.Key)
		out = appendTime(out, in.OneTime.Expires)
	}
	out = appendString(out, in.Renews)
	return appendCert(out, &in.Cert)
}

func (in *Renew) readPayload(r *reader) {
	flags := r.byte()
	if flags&^(renewOneTime|renewRevoke) != 0 {
		r.fail(errors.New("unknown renew flags"))
		return
	}
	if flags&renewOneTime != 0 {
		in.OneTime = &OneTime{Key: r.bytes(), Expires: r.time()}
	}
	in.RevokeRenewed = flags&renewRevoke != 0
	in.Renews = r.string()
	readCert(r, &in.Cert)
}

// markCRLStale records that an issuer's CRL lacks a revocation committed at
// this entry's index: the leader signs a new CRL for each stale issuer at
// most once per interval (authority.RefreshStaleCRLs), and a CRL signed
// from a state at or past the index clears the mark (applyCRLPut).
func markCRLStale(a *applyCtx, c *Cert) {
	markStale(a, c.Authority, c.Issuer)
	if id := shardOf(a, c); id != "" {
		markStale(a, c.Authority, id) // of the shards, only c's
	}
}

func markStale(a *applyCtx, authority, issuer string) {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], a.index)
	put(a.tx, bCRLStale, issuerKey(authority, issuer), v[:])
}

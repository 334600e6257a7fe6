package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"time"
)

func init() {
	register(CmdIssue, "issue", 4, applyIssue)
	registerBinary(CmdIssue, 2, func() payloadReader { return new(Issue) })
	needsFormat(CmdIssue, 4, 8)
}

// Issue records a certificate together with what authorized it, in one
// entry: a certificate is never handed out without its record, and a
// single-use credential is never consumed without a certificate. At least
// one authorization is set:
//   - TokenHash: an enrollment token, which must exist, be live and unused;
//   - OneTime: the ID of a self-minted token (a JWK provisioner's JWT, a
//     renewal JWS), which must not have been seen before;
//   - Renews: the serial of the certificate being renewed, which must not be
//     revoked nor expired beyond its provisioner's grace window;
//   - Device: the ID of a device of an x5c provisioner, whose factory
//     certificate the proposer verified; its entry decides (checkDevice).
//
// Version 1 carried only TokenHash and Cert; version 2 added OneTime and
// Renews; version 3 is the same fields in a binary frame (appendPayload):
// every node decodes every issue, and its JSON was the largest part of
// applying one. Version 4 adds Device (log format 8); an issue without
// one is still written as version 3.
type Issue struct {
	TokenHash []byte   `json:"token_hash,omitempty"`
	OneTime   *OneTime `json:"one_time,omitempty"`
	Renews    string   `json:"renews,omitempty"`
	Device    string   `json:"device,omitempty"`
	// ProvisionerVersion and ProvisionerCreated (with Device): the
	// version of the x5c provisioner the device was verified against, and
	// when that provisioner was created (versions start again at 1 when a
	// provisioner is made again under its name).
	ProvisionerVersion uint64    `json:"provisioner_version,omitempty"`
	ProvisionerCreated time.Time `json:"provisioner_created,omitzero"`
	Cert               Cert      `json:"cert"`
}

func (in Issue) payloadVersion() uint16 {
	if in.Device != "" {
		return 4
	}
	return 3
}

// OneTime is a single-use ID, remembered until Expires so a replay fails.
type OneTime struct {
	Key     []byte    `json:"key"` // hash of the issuer and the ID
	Expires time.Time `json:"expires"`
}

type nonce struct {
	Expires time.Time `json:"expires"`
	UsedBy  string    `json:"used_by"`
}

func applyIssue(a *applyCtx) error {
	var in Issue
	a.decode(&in)
	c := &in.Cert
	a.notef("serial=%s provisioner=%s sans=%v renews=%s", c.Serial, c.Provisioner, c.SANs, in.Renews)

	if cur := a.tx.Bucket(bCerts).Get([]byte(c.Serial)); cur != nil {
		var old Cert
		if a.f.getCert(a.tx, c.Serial, &old) == nil && bytes.Equal(old.DER, c.DER) {
			return nil // this very entry, proposed again after a lost leader
		}
		return reject(ErrSerialExists, "serial "+c.Serial+" already issued")
	}
	if in.TokenHash == nil && in.OneTime == nil && in.Renews == "" && in.Device == "" {
		panic("fsm: issue entry without an authorization")
	}
	if auth, err := a.authority(c.Authority); err != nil || auth.Issuer(c.Issuer) == nil {
		return reject(ErrAuthorityUnknown, "unknown authority or issuer "+c.Authority+"/"+c.Issuer)
	}

	var tok Token
	if in.TokenHash != nil {
		if err := getJSON(a.tx, bTokens, in.TokenHash, &tok); err != nil {
			return ErrTokenInvalid
		}
		switch {
		case tok.UsedBy != "":
			return reject(ErrTokenUsed, "token "+tok.ID+" has already been used")
		case !tok.RevokedAt.IsZero():
			return reject(ErrTokenRevoked, "token "+tok.ID+" has been revoked")
		case !a.now.Before(tok.ExpiresAt):
			return reject(ErrTokenExpired, "token "+tok.ID+" has expired")
		case tok.Provisioner != c.Provisioner:
			return reject(ErrProvisioner, "token "+tok.ID+" belongs to another provisioner")
		}
		for _, n := range c.SANs {
			if !slices.Contains(tok.SANs, n) {
				return reject(ErrNameNotAllowed, "name "+n+" is not allowed by token "+tok.ID)
			}
		}
	}
	if in.OneTime != nil {
		if a.tx.Bucket(bNonces).Get(in.OneTime.Key) != nil {
			return reject(ErrTokenUsed, "token has already been used")
		}
		if !a.now.Before(in.OneTime.Expires) {
			return reject(ErrTokenExpired, "token has expired")
		}
	}
	if in.Renews != "" {
		if err := checkRenewal(a, in.Renews, c); err != nil {
			return err
		}
	}
	var dev *Device
	if in.Device != "" {
		var err error
		if dev, err = checkDevice(a, in.Device, in.ProvisionerVersion, in.ProvisionerCreated, c); err != nil {
			return err
		}
	}

	c.IssuedAt = a.now
	if in.TokenHash != nil {
		c.TokenID = tok.ID
		c.Properties = tok.Properties
		tok.UsedAt, tok.UsedBy = a.now, c.Serial
		putJSON(a.tx, bTokens, in.TokenHash, &tok)
	}
	if in.OneTime != nil {
		putJSON(a.tx, bNonces, in.OneTime.Key, nonce{Expires: in.OneTime.Expires, UsedBy: c.Serial})
		put(a.tx, bNoncesByExp, timeKey(in.OneTime.Expires, in.OneTime.Key), nil)
	}
	if in.Renews != "" {
		c.RenewedFrom = in.Renews
	}
	if dev != nil {
		c.Properties = map[string]string{DeviceProperty: dev.ID}
		putJSON(a.tx, bDevices, deviceKey(dev.Provisioner, dev.ID), dev)
	}
	putCert(a, c)
	return nil
}

// putCert stores a certificate record and its search indexes.
func putCert(a *applyCtx, c *Cert) {
	serial := []byte(c.Serial)
	putRecord(a, c)
	put(a.tx, bCertsByExpiry, timeKey(c.NotAfter, serial), nil)
	for _, n := range c.SANs {
		put(a.tx, bCertsBySAN, indexKey(n, c.Serial), nil)
	}
	if c.Provisioner != "" {
		put(a.tx, bCertsByProv, indexKey(c.Provisioner, c.Serial), nil)
	}
	for k, v := range c.Properties {
		put(a.tx, bCertsByProp, indexKey(k+"="+v, c.Serial), nil)
	}
}

// indexKey is value, 0, id: a prefix scan for value lists its ids.
func indexKey(value, id string) []byte { return []byte(value + "\x00" + id) }

// checkRenewal enforces, at commit time, that a renewal keeps the old
// certificate's identity and that the old certificate may still be renewed.
// Checking here, not only on the node that signed, orders renewals after
// any revocation committed before them.
func checkRenewal(a *applyCtx, serial string, c *Cert) error {
	var old Cert
	if err := a.f.getCert(a.tx, serial, &old); err != nil {
		return reject(ErrCertUnknown, "no certificate with serial "+serial)
	}
	return checkRenewable(a, &old, c)
}

// checkRenewable is checkRenewal of a record already read. A device's
// certificate passes its device ID on to the successor.
func checkRenewable(a *applyCtx, old *Cert, c *Cert) error {
	serial := old.Serial
	if old.Revoked() {
		return reject(ErrCertRevoked, "certificate "+serial+" has been revoked")
	}
	grace := time.Duration(0)
	if p, err := a.f.provisioners.get(a.tx, bProvisioners, old.Provisioner); err == nil {
		grace = p.Policy.RenewGrace
	}
	if a.now.After(old.NotAfter.Add(grace)) {
		return reject(ErrCertExpired, "certificate "+serial+" expired beyond its renewal grace window")
	}
	if err := checkDeviceRenewal(a, old); err != nil {
		return err
	}
	if id := old.Properties[DeviceProperty]; id != "" {
		// The successor is the same device's: its revocation reaches it.
		c.Properties = map[string]string{DeviceProperty: id}
	}
	if old.Authority != c.Authority || old.Provisioner != c.Provisioner || old.Subject != c.Subject ||
		!sameSet(old.SANs, c.SANs) {
		return reject(ErrNameNotAllowed, "a renewal must keep the identity of certificate "+serial)
	}
	return nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// Issue flags in the binary frame.
const (
	issueTokenHash = 1 << iota
	issueOneTime
	issueDevice
)

func (in Issue) appendPayload(out []byte) []byte {
	var flags byte
	if in.TokenHash != nil {
		flags |= issueTokenHash
	}
	if in.OneTime != nil {
		flags |= issueOneTime
	}
	if in.Device != "" {
		flags |= issueDevice
	}
	out = append(out, flags)
	if in.TokenHash != nil {
		out = appendBytes(out, in.TokenHash)
	}
	if in.OneTime != nil {
		out = appendBytes(out, in.OneTime.Key)
		out = appendTime(out, in.OneTime.Expires)
	}
	out = appendString(out, in.Renews)
	if in.Device != "" {
		out = appendString(out, in.Device)
		out = binary.AppendUvarint(out, in.ProvisionerVersion)
		out = appendTime(out, in.ProvisionerCreated)
	}
	return appendCert(out, &in.Cert)
}

func (in *Issue) readPayload(r *reader) {
	flags := r.byte()
	if flags&^(issueTokenHash|issueOneTime|issueDevice) != 0 {
		r.fail(errors.New("unknown issue flags"))
		return
	}
	if flags&issueTokenHash != 0 {
		in.TokenHash = r.bytes()
	}
	if flags&issueOneTime != 0 {
		in.OneTime = &OneTime{Key: r.bytes(), Expires: r.time()}
	}
	in.Renews = r.string()
	if flags&issueDevice != 0 {
		in.Device, in.ProvisionerVersion, in.ProvisionerCreated = r.string(), r.uvarint(math.MaxUint64), r.time()
	}
	readCert(r, &in.Cert)
}

func appendCert(out []byte, c *Cert) []byte {
	for _, s := range []string{c.Serial, c.Authority, c.Issuer, c.Subject} {
		out = appendString(out, s)
	}
	out = appendStrings(out, c.SANs)
	out = appendTime(out, c.NotBefore)
	out = appendTime(out, c.NotAfter)
	out = appendString(out, c.TokenID)
	out = appendString(out, c.Provisioner)
	out = appendMap(out, c.Properties)
	out = appendString(out, c.Requester)
	out = appendString(out, c.RenewedFrom)
	out = appendTime(out, c.IssuedAt)
	out = appendBytes(out, c.DER)
	out = appendTime(out, c.RevokedAt)
	out = binary.AppendVarint(out, int64(c.RevocationReason))
	return appendString(out, c.RevokedBy)
}

func readCert(r *reader, c *Cert) {
	c.Serial, c.Authority, c.Issuer, c.Subject = r.string(), r.string(), r.string(), r.string()
	c.SANs = r.strings()
	c.NotBefore = r.time()
	c.NotAfter = r.time()
	c.TokenID = r.string()
	c.Provisioner = r.string()
	c.Properties = r.stringMap()
	c.Requester = r.string()
	c.RenewedFrom = r.string()
	c.IssuedAt = r.time()
	c.DER = r.bytes()
	c.RevokedAt = r.time()
	c.RevocationReason = int(r.varint())
	c.RevokedBy = r.string()
}

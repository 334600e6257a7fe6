package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

func init() {
	register(CmdAdminWithdraw, "admin_withdraw", 1, applyAdminWithdraw)
	needsFormat(CmdAdminWithdraw, 1, 2)
	register(CmdAdminRenew, "admin_renew", 1, applyAdminRenew)
	needsFormat(CmdAdminRenew, 1, 2)
}

// MaxRecoveryTTL bounds a recovery credential's life at its creation (the
// console asks for one hour; the rest is room for clocks that differ).
const MaxRecoveryTTL = 2 * time.Hour

// AdminWithdraw withdraws an admin credential: by admin ID (the admin API),
// or by the serial of a certificate (a certificate revocation; if it is no
// admin's current certificate, only the certificate is revoked). A
// certificate admin's certificate is revoked in the same entry, so the
// admin record, OCSP and the CRL agree. It replaces admin_revoke, which
// counted admins that expire the next minute and left certificates alone.
type AdminWithdraw struct {
	ID     string `json:"id,omitempty"`
	Serial string `json:"serial,omitempty"`
	Reason int    `json:"reason"` // RFC 5280 CRLReason, for the certificate
	By     string `json:"by"`
}

func applyAdminWithdraw(a *applyCtx) error {
	var in AdminWithdraw
	a.decode(&in)
	a.notef("admin_id=%s serial=%s reason=%d", in.ID, in.Serial, in.Reason)
	var target *Admin
	var key []byte
	var cert *Cert
	if in.Serial != "" {
		cert = new(Cert)
		if err := a.f.getCert(a.tx, in.Serial, cert); err != nil {
			return reject(ErrCertUnknown, "no certificate with serial "+in.Serial)
		}
		key = []byte("cert:" + in.Serial)
		var ad Admin
		if getJSON(a.tx, bAdmins, key, &ad) == nil {
			target = &ad
		}
	} else {
		if target, key = adminByID(a, in.ID); target == nil {
			return reject(ErrNotFoundAdmin, "no admin with id "+in.ID)
		}
		if target.CertSerial != "" {
			cert = new(Cert)
			if a.f.getCert(a.tx, target.CertSerial, cert) != nil {
				cert = nil
			}
		}
	}
	if target != nil && target.RevokedAt.IsZero() {
		// The last active admin-role credential stays, even one about to
		// expire: it is who can create a successor. A recovery credential
		// is no such admin (a leaked one must be withdrawable).
		active := target.Active(a.now) && (cert == nil || !cert.Revoked())
		if target.Role == "admin" && !target.Recovery && active && !otherUsableAdmin(a, target.ID) {
			return reject(ErrLastAdmin, "admin "+target.Name+" is the last usable admin (not revoked, not expiring within "+
				UsableMargin.String()+"); create another first")
		}
		target.RevokedAt = a.now
		putJSON(a.tx, bAdmins, key, target)
	}
	if cert != nil {
		markRevoked(a, cert, in.Reason, in.By)
	}
	return nil
}

// adminByID finds an admin record and its key; admins are few.
func adminByID(a *applyCtx, id string) (*Admin, []byte) {
	var found *Admin
	var key []byte
	err := a.tx.Bucket(bAdmins).ForEach(func(k, v []byte) error {
		var ad Admin
		if err := json.Unmarshal(v, &ad); err != nil {
			return err
		}
		if ad.ID == id {
			found, key = &ad, bytes.Clone(k)
		}
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("fsm: read admins: %v", err))
	}
	return found, key
}

// otherUsableAdmin reports whether an admin-role credential other than id
// is usable at the entry's time: not revoked, not expiring within
// UsableMargin, its certificate (if any) not revoked.
func otherUsableAdmin(a *applyCtx, id string) bool {
	found := false
	err := a.tx.Bucket(bAdmins).ForEach(func(_, v []byte) error {
		var ad Admin
		if err := json.Unmarshal(v, &ad); err != nil {
			return err
		}
		if found || ad.ID == id || ad.Role != "admin" || !ad.Usable(a.now) {
			return nil
		}
		if ad.CertSerial != "" {
			var c Cert
			if a.f.getCert(a.tx, ad.CertSerial, &c) != nil || c.Revoked() {
				return nil
			}
		}
		found = true
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("fsm: read admins: %v", err))
	}
	return found
}

// AdminRenew records the renewal of an admin certificate: the new
// certificate (Cert.RenewedFrom names the old one), and the admin record
// moved from the old serial to the new one with the new expiry. The old
// certificate stays a valid certificate until it expires, but no longer
// authenticates an admin: one admin, one current certificate.
type AdminRenew struct {
	Cert Cert `json:"cert"`
}

func applyAdminRenew(a *applyCtx) error {
	var in AdminRenew
	a.decode(&in)
	c := &in.Cert
	a.notef("serial=%s renews=%s", c.Serial, c.RenewedFrom)
	newKey, oldKey := []byte("cert:"+c.Serial), []byte("cert:"+c.RenewedFrom)
	if a.tx.Bucket(bAdmins).Get(newKey) != nil {
		var have Cert
		if a.f.getCert(a.tx, c.Serial, &have) == nil && bytes.Equal(have.DER, c.DER) {
			return nil // a retried proposal
		}
		return reject(ErrSerialExists, "serial "+c.Serial+" already issued")
	}
	var ad Admin
	if getJSON(a.tx, bAdmins, oldKey, &ad) != nil {
		return reject(ErrAdminInactive, "certificate "+c.RenewedFrom+" is not an admin's current certificate (renewed or withdrawn)")
	}
	var old Cert
	if a.f.getCert(a.tx, c.RenewedFrom, &old) != nil {
		return reject(ErrCertUnknown, "no certificate with serial "+c.RenewedFrom)
	}
	switch {
	case old.Revoked():
		return reject(ErrCertRevoked, "certificate "+old.Serial+" has been revoked")
	case !ad.RevokedAt.IsZero():
		return reject(ErrAdminInactive, "admin "+ad.Name+" has been revoked")
	case !a.now.Before(old.NotAfter):
		return reject(ErrCertExpired, "admin certificate "+old.Serial+" has expired")
	case old.Authority != c.Authority || old.Subject != c.Subject:
		return reject(ErrNameNotAllowed, "a renewal must keep the authority and subject of certificate "+old.Serial)
	case a.tx.Bucket(bCerts).Get([]byte(c.Serial)) != nil:
		return reject(ErrSerialExists, "serial "+c.Serial+" already issued")
	}
	c.IssuedAt = a.now
	putCert(a, c)
	del(a.tx, bAdmins, oldKey)
	ad.CertSerial, ad.ExpiresAt = c.Serial, c.NotAfter
	putJSON(a.tx, bAdmins, newKey, &ad)
	return nil
}

package fsm

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

func init() {
	register(CmdCertPrune, "cert_prune", 1, applyCertPrune)
	needsFormat(CmdCertPrune, 1, 4)
}

// MaxPruneBatch is the most records one cert_prune entry removes: an
// entry stays far below a Raft entry's size, and its transaction short
// beside the issuances it is applied with.
const MaxPruneBatch = 5000

// CertPrune removes the records of certificates that expired before
// Before, with their index entries, once their retention has passed. The
// leader names them (the ones it archived); Apply removes only those that
// did expire before Before, and Before may not be later than the entry's
// time, so no entry can remove a current certificate's record.
type CertPrune struct {
	Before  time.Time `json:"before"`
	Serials []string  `json:"serials"`
}

func applyCertPrune(a *applyCtx) error {
	var in CertPrune
	a.decode(&in)
	if len(in.Serials) > MaxPruneBatch {
		return reject(ErrMalformed, fmt.Sprintf("cert_prune: %d serials, more than %d", len(in.Serials), MaxPruneBatch))
	}
	if in.Before.After(a.now) {
		return reject(ErrMalformed, "cert_prune: before is later than the entry's time")
	}
	removed := 0
	for _, serial := range in.Serials {
		var c Cert
		if err := a.f.getCert(a.tx, serial, &c); err != nil || !c.NotAfter.Before(in.Before) {
			continue // gone already (a retried entry), or not expired long enough
		}
		dropCert(a, &c)
		removed++
	}
	a.notef("before=%s removed=%d", in.Before.UTC().Format(time.RFC3339), removed)
	return nil
}

// dropCert removes c's record and every key that lists it: the inverse of
// putCert and setRevoked.
func dropCert(a *applyCtx, c *Cert) {
	serial := []byte(c.Serial)
	del(a.tx, bCerts, serial)
	del(a.tx, bCertsByExpiry, timeKey(c.NotAfter, serial))
	for _, n := range c.SANs {
		del(a.tx, bCertsBySAN, indexKey(n, c.Serial))
	}
	if c.Provisioner != "" {
		del(a.tx, bCertsByProv, indexKey(c.Provisioner, c.Serial))
	}
	for k, v := range c.Properties {
		del(a.tx, bCertsByProp, indexKey(k+"="+v, c.Serial))
	}
	if c.Revoked() {
		del(a.tx, bRevoked, revokedKey(c.Authority, c.Issuer, c))
		if id := shardOf(a, c); id != "" {
			del(a.tx, bRevoked, revokedKey(c.Authority, id, c))
		}
	}
}

// ExpiredCerts returns up to limit records of certificates that expired
// before t, the longest expired first: the next batch for retention to
// archive and remove.
func (f *FSM) ExpiredCerts(t time.Time, limit int) ([]Cert, error) {
	end := timeKey(t, nil)
	var out []Cert
	err := f.view(func(tx *bolt.Tx) error {
		certs := tx.Bucket(bCerts)
		c := tx.Bucket(bCertsByExpiry).Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], end) < 0 && len(out) < limit; k, _ = c.Next() {
			v := certs.Get(k[8:])
			if v == nil {
				continue
			}
			var rec Cert
			if err := f.decodeRecord(tx, k[8:], v, &rec); err != nil {
				return fmt.Errorf("fsm: corrupt record in %s: %w", bCerts, err)
			}
			out = append(out, rec)
		}
		return nil
	})
	return out, err
}

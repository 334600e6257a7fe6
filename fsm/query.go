package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Searches walk one index (no full scans) and filter what it yields.
// Pages are resumed with the opaque cursor of the previous page.

// CertQuery selects certificate records. Empty fields match everything.
type CertQuery struct {
	SAN           string
	Provisioner   string
	Property      string // "key=value"
	Status        string // valid, revoked, expired
	ExpiresAfter  time.Time
	ExpiresBefore time.Time
	Now           time.Time // for the status filter
	Cursor        []byte
	Limit         int
}

// Status of a certificate at t: valid, revoked or expired.
func (c *Cert) Status(t time.Time) string {
	switch {
	case c.Revoked():
		return "revoked"
	case !t.Before(c.NotAfter):
		return "expired"
	}
	return "valid"
}

func (q *CertQuery) matches(c *Cert) bool {
	switch {
	case q.Status != "" && c.Status(q.Now) != q.Status:
	case !q.ExpiresAfter.IsZero() && c.NotAfter.Before(q.ExpiresAfter):
	case !q.ExpiresBefore.IsZero() && !c.NotAfter.Before(q.ExpiresBefore):
	case q.Provisioner != "" && c.Provisioner != q.Provisioner:
	default:
		return true
	}
	return false
}

// SearchCerts returns matching records in index order and the cursor of the
// next page (nil at the end).
func (f *FSM) SearchCerts(q CertQuery) ([]*Cert, []byte, error) {
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 100
	}
	// Pick the most selective index the query names.
	bucket, prefix, serialAt := bCertsByExpiry, []byte(nil), 8
	switch {
	case q.SAN != "":
		bucket, prefix = bCertsBySAN, []byte(q.SAN+"\x00")
	case q.Property != "":
		bucket, prefix = bCertsByProp, []byte(q.Property+"\x00")
	case q.Provisioner != "":
		bucket, prefix = bCertsByProv, []byte(q.Provisioner+"\x00")
	}
	if prefix != nil {
		serialAt = len(prefix)
	}
	start := prefix
	if prefix == nil && !q.ExpiresAfter.IsZero() {
		start = timeKey(q.ExpiresAfter, nil)
	}
	if q.Cursor != nil {
		start = append(bytes.Clone(q.Cursor), 0)
	}
	var out []*Cert
	var next []byte
	err := f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		var last []byte
		for k, _ := c.Seek(start); k != nil; k, _ = c.Next() {
			if prefix != nil && !bytes.HasPrefix(k, prefix) {
				break
			}
			if prefix == nil && !q.ExpiresBefore.IsZero() && bytes.Compare(k[:8], timeKey(q.ExpiresBefore, nil)) >= 0 {
				break
			}
			if len(out) == q.Limit {
				next = last // more may follow: resume after the last one returned
				break
			}
			var rec Cert
			if err := f.getCert(tx, string(k[serialAt:]), &rec); errors.Is(err, ErrNotFound) {
				// A longer value sharing the prefix ("k=v\x00..."), not
				// this one's: properties hold no NUL, but records written
				// before that rule may.
				continue
			} else if err != nil {
				return err
			}
			if q.matches(&rec) {
				out = append(out, &rec)
				last = bytes.Clone(k)
			}
		}
		return nil
	})
	return out, next, err
}

// OutstandingTokens lists tokens that can still be used at now: of one
// provisioner, or all by expiry.
func (f *FSM) OutstandingTokens(provisioner string, now time.Time, cursor []byte, limit int) ([]*Token, []byte, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	bucket, prefix, start := bTokensByExp, []byte(nil), timeKey(now, nil)
	hashAt := 8
	if provisioner != "" {
		bucket, prefix = bTokensByProv, []byte(provisioner+"\x00")
		start, hashAt = prefix, len(prefix)
	}
	if cursor != nil {
		start = append(bytes.Clone(cursor), 0)
	}
	var out []*Token
	var next []byte
	err := f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		var last []byte
		for k, _ := c.Seek(start); k != nil; k, _ = c.Next() {
			if prefix != nil && !bytes.HasPrefix(k, prefix) {
				break
			}
			if len(out) == limit {
				next = last
				break
			}
			var t Token
			if err := getJSON(tx, bTokens, k[hashAt:], &t); err != nil {
				continue // pruned under us
			}
			if t.outstanding(now) {
				out = append(out, &t)
				last = bytes.Clone(k)
			}
		}
		return nil
	})
	return out, next, err
}

// Admins lists every admin credential, revoked ones included.
func (f *FSM) Admins() ([]*Admin, error) { return list[Admin](f, bAdmins) }

// AdminByCert finds the admin whose client certificate has this serial.
func (f *FSM) AdminByCert(serial string) (*Admin, error) {
	return get[Admin](f, bAdmins, []byte("cert:"+serial))
}

// IssuerRef names one issuer of one authority.
type IssuerRef struct{ Authority, Issuer string }

// StaleCRLs lists the issuers whose current CRL lacks a committed
// revocation. The bucket holds one key per issuer at most.
func (f *FSM) StaleCRLs() ([]IssuerRef, error) {
	var out []IssuerRef
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bCRLStale).ForEach(func(k, _ []byte) error {
			parts := bytes.Split(k, []byte{0})
			if len(parts) != 3 {
				return fmt.Errorf("fsm: corrupt key in %s", bCRLStale)
			}
			out = append(out, IssuerRef{Authority: string(parts[0]), Issuer: string(parts[1])})
			return nil
		})
	})
	return out, err
}

package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Reads run against this node's applied state, which may trail the leader;
// callers that need read-your-writes across nodes wait on a barrier first.

func getJSON(tx *bolt.Tx, bucket, key []byte, v any) error {
	b := tx.Bucket(bucket).Get(key)
	if b == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("fsm: corrupt record in %s: %w", bucket, err)
	}
	return nil
}

func putJSON(tx *bolt.Tx, bucket, key []byte, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fsm: encode record for %s: %v", bucket, err))
	}
	if err := tx.Bucket(bucket).Put(key, b); err != nil {
		panic(fmt.Sprintf("fsm: put %s: %v", bucket, err))
	}
}

func put(tx *bolt.Tx, bucket, key, v []byte) {
	if v == nil {
		v = []byte{}
	}
	if err := tx.Bucket(bucket).Put(key, v); err != nil {
		panic(fmt.Sprintf("fsm: put %s: %v", bucket, err))
	}
}

func del(tx *bolt.Tx, bucket, key []byte) {
	if err := tx.Bucket(bucket).Delete(key); err != nil {
		panic(fmt.Sprintf("fsm: delete %s: %v", bucket, err))
	}
}

// timeKey orders records by a time, then by id, for range scans.
func timeKey(t time.Time, id []byte) []byte {
	k := make([]byte, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	copy(k[8:], id)
	return k
}

// get reads one record in its own read transaction.
func get[T any](f *FSM, bucket, key []byte) (*T, error) {
	var v T
	if err := f.view(func(tx *bolt.Tx) error { return getJSON(tx, bucket, key, &v) }); err != nil {
		return nil, err
	}
	return &v, nil
}

// Authority returns the named authority: the caller's copy, which it may
// change (certificates' DER excepted, which nobody writes into).
func (f *FSM) Authority(name string) (*Authority, error) {
	var a *Authority
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		a, err = f.authorities.get(tx, bAuthorities, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return a.clone(), nil
}

// clone copies a decoded authority down to its lists, so the cached one
// stays as decoded whatever the caller does with the copy.
func (a *Authority) clone() *Authority {
	c := *a
	c.Issuers, c.AddedRoots = slices.Clone(a.Issuers), slices.Clone(a.AddedRoots)
	for i := range c.Issuers {
		c.Issuers[i].Chain = slices.Clone(a.Issuers[i].Chain)
	}
	return &c
}

// authority reads an authority in Apply, decoding its record only when
// its bytes are new. Every issuance reads its authority (twice: to sign,
// and in Apply), and decoding the certificates in it each time was a tenth
// of a node's CPU. The result is shared: read it, never change it.
func (a *applyCtx) authority(name string) (*Authority, error) {
	return a.f.authorities.get(a.tx, bAuthorities, name)
}

// maxDecoded bounds a decodedCache: more provisioners than that would be
// decoded again on every request.
const maxDecoded = 1024

// decodedCache decodes the records of one bucket once per distinct bytes.
// Keyed by the record's bytes, it cannot be stale; it is for the few
// records every request reads (authorities, provisioners).
type decodedCache[T any] struct {
	mu sync.Mutex
	m  map[string]*T
}

func (c *decodedCache[T]) get(tx *bolt.Tx, bucket []byte, name string) (*T, error) {
	raw := tx.Bucket(bucket).Get([]byte(name))
	if raw == nil {
		return nil, ErrNotFound
	}
	c.mu.Lock()
	v := c.m[string(raw)]
	c.mu.Unlock()
	if v != nil {
		return v, nil
	}
	v = new(T)
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("fsm: corrupt record in %s: %w", bucket, err)
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxDecoded {
		c.m = map[string]*T{}
	}
	c.m[string(raw)] = v
	c.mu.Unlock()
	return v, nil
}

// list reads every record of a bucket, in key order.
func list[T any](f *FSM, bucket []byte) ([]*T, error) {
	var out []*T
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var x T
			if err := json.Unmarshal(v, &x); err != nil {
				return fmt.Errorf("fsm: corrupt record in %s: %w", bucket, err)
			}
			out = append(out, &x)
			return nil
		})
	})
	return out, err
}

// Authorities lists all authorities in name order.
func (f *FSM) Authorities() ([]*Authority, error) { return list[Authority](f, bAuthorities) }

// Cert returns the record of an issued certificate by serial (lowercase hex).
func (f *FSM) Cert(serial string) (*Cert, error) {
	var c Cert
	if err := f.view(func(tx *bolt.Tx) error { return f.getCert(tx, serial, &c) }); err != nil {
		return nil, err
	}
	return &c, nil
}

// CertCount is the number of issued-certificate records.
func (f *FSM) CertCount() int {
	n := 0
	_ = f.view(func(tx *bolt.Tx) error { n = tx.Bucket(bCerts).Stats().KeyN; return nil })
	return n
}

// TokenByHash looks a token up by the SHA-256 of its secret.
func (f *FSM) TokenByHash(hash []byte) (*Token, error) { return get[Token](f, bTokens, hash) }

// TokenByID looks a token up by its public ID.
func (f *FSM) TokenByID(id string) (*Token, error) {
	var t Token
	err := f.view(func(tx *bolt.Tx) error {
		h := tx.Bucket(bTokenIDs).Get([]byte(id))
		if h == nil {
			return ErrNotFound
		}
		return getJSON(tx, bTokens, h, &t)
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// HasTokensExpiredBefore reports whether any token or one-time ID expired
// before t, so the leader proposes a prune only when there is something to
// prune.
func (f *FSM) HasTokensExpiredBefore(t time.Time) bool {
	found := false
	_ = f.view(func(tx *bolt.Tx) error {
		for _, index := range [][]byte{bTokensByExp, bNoncesByExp} {
			k, _ := tx.Bucket(index).Cursor().First()
			found = found || (k != nil && bytes.Compare(k[:8], timeKey(t, nil)) < 0)
		}
		return nil
	})
	return found
}

// AdminByHash looks an admin credential up by the SHA-256 of its token.
func (f *FSM) AdminByHash(hash []byte) (*Admin, error) { return get[Admin](f, bAdmins, hash) }

// AdminCount is the number of admin credentials.
func (f *FSM) AdminCount() int {
	n := 0
	_ = f.view(func(tx *bolt.Tx) error { n = tx.Bucket(bAdmins).Stats().KeyN; return nil })
	return n
}

// Node returns a member's addresses.
func (f *FSM) Node(id string) (*Node, error) { return get[Node](f, bNodes, []byte(id)) }

// Digest is a hash of every record (not the file bytes, which depend on page
// layout, not the applied index, not the audit log and its index, which
// AuditHead and VerifyAudit cover). Equal digests mean equal state.
func (f *FSM) Digest() string {
	h := sha256.New()
	_ = f.view(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if bytes.Equal(name, bMeta) || bytes.Equal(name, bAudit) || bytes.Equal(name, bAuditIndex) {
				continue
			}
			b := tx.Bucket(name)
			fmt.Fprintf(h, "bucket %s\n", name)
			_ = b.ForEach(func(k, v []byte) error {
				var n [8]byte
				binary.BigEndian.PutUint64(n[:], uint64(len(k)))
				h.Write(n[:])
				h.Write(k)
				binary.BigEndian.PutUint64(n[:], uint64(len(v)))
				h.Write(n[:])
				h.Write(v)
				return nil
			})
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

// Provisioner returns the named provisioner.
func (f *FSM) Provisioner(name string) (*Provisioner, error) {
	var p *Provisioner
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		p, err = f.provisioners.get(tx, bProvisioners, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	c := *p // the caller's copy: the cached one stays as decoded
	pol := &c.Policy
	for _, l := range []*[]string{&pol.DNS, &pol.IP, &pol.URI, &pol.Email, &pol.CommonName, &pol.KeyTypes} {
		*l = slices.Clone(*l)
	}
	c.JWK = slices.Clone(c.JWK)
	return &c, nil
}

// Provisioners lists all provisioners in name order.
func (f *FSM) Provisioners() ([]*Provisioner, error) { return list[Provisioner](f, bProvisioners) }

// ServerProvisioners lists the provisioners of kind server, whose names
// every other issuance must avoid. Every request asks: the answer is kept
// until a provisioner is written.
func (f *FSM) ServerProvisioners() ([]*Provisioner, error) {
	gen := f.provisionersGen.Load()
	if c := f.serverProvisioners.Load(); c != nil && c.gen == gen {
		return c.list, nil
	}
	var out []*Provisioner
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bProvisioners).ForEach(func(k, v []byte) error {
			p, err := f.provisioners.get(tx, bProvisioners, string(k))
			if err == nil && p.Kind == KindServer {
				out = append(out, p)
			}
			return err
		})
	})
	if err == nil {
		f.serverProvisioners.Store(&serverProvisioners{gen: gen, list: out})
	}
	return out, err
}

type serverProvisioners struct {
	gen  uint64
	list []*Provisioner
}

// CRL returns the current CRL of an issuer of an authority.
func (f *FSM) CRL(authority, issuer string) (*CRL, error) {
	return get[CRL](f, bCRLs, issuerKey(authority, issuer))
}

// HasCRL says whether a CRL of an issuer (or shard, or root) is stored,
// without reading it: the leader asks of every CRL once per CRL interval.
func (f *FSM) HasCRL(authority, issuer string) bool {
	found := false
	_ = f.view(func(tx *bolt.Tx) error { found = tx.Bucket(bCRLs).Get(issuerKey(authority, issuer)) != nil; return nil })
	return found
}

// CRLSummary is a stored CRL without its DER.
type CRLSummary struct {
	Authority, Issuer      string
	Number                 uint64
	ThisUpdate, NextUpdate time.Time
}

// CRLSummaries lists every stored CRL, whichever issuer (or root) it is
// for, by authority and issuer. The DER is left out: a CRL may be
// megabytes and monitoring reads only its number and dates.
func (f *FSM) CRLSummaries() ([]CRLSummary, error) {
	var out []CRLSummary
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bCRLs).ForEach(func(k, v []byte) error {
			parts := bytes.Split(k, []byte{0})
			var c struct {
				Number     uint64    `json:"number"`
				ThisUpdate time.Time `json:"this_update"`
				NextUpdate time.Time `json:"next_update"`
			}
			if len(parts) != 3 || json.Unmarshal(v, &c) != nil {
				return fmt.Errorf("fsm: corrupt record in %s", bCRLs)
			}
			out = append(out, CRLSummary{Authority: string(parts[0]), Issuer: string(parts[1]),
				Number: c.Number, ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate})
			return nil
		})
	})
	return out, err
}

// RevokedEntry is one line of a CRL.
type RevokedEntry struct {
	Serial    string
	RevokedAt time.Time
	Reason    int
	NotAfter  time.Time
}

// Revoked lists the revoked certificates of one issuer that expire at or
// after t, by expiry.
func (f *FSM) Revoked(authority, issuer string, t time.Time) ([]RevokedEntry, error) {
	prefix := issuerKey(authority, issuer)
	var out []RevokedEntry
	err := f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bRevoked).Cursor()
		for k, v := c.Seek(append(bytes.Clone(prefix), timeKey(t, nil)...)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var e revokedEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			notAfter := int64(binary.BigEndian.Uint64(k[len(prefix):]))
			out = append(out, RevokedEntry{Serial: e.Serial, RevokedAt: time.Unix(e.RevokedAt, 0).UTC(),
				Reason: e.Reason, NotAfter: time.Unix(0, notAfter).UTC()})
		}
		return nil
	})
	return out, err
}

// RevokedMore says whether more than n certificates of one CRL (an
// issuer's, a shard's) expire at or after t, reading at most n+1 keys and
// decoding none: a CRL that outgrew its limit is asked about every CRL
// interval, and reading it whole each time cost what it had grown to.
func (f *FSM) RevokedMore(authority, issuer string, t time.Time, n int) bool {
	prefix := issuerKey(authority, issuer)
	seen := 0
	_ = f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bRevoked).Cursor()
		for k, _ := c.Seek(append(bytes.Clone(prefix), timeKey(t, nil)...)); k != nil && bytes.HasPrefix(k, prefix) && seen <= n; k, _ = c.Next() {
			seen++
		}
		return nil
	})
	return seen > n
}

// OneTimeUsed reports whether a one-time token ID has been seen.
func (f *FSM) OneTimeUsed(key []byte) bool {
	seen := false
	_ = f.view(func(tx *bolt.Tx) error { seen = tx.Bucket(bNonces).Get(key) != nil; return nil })
	return seen
}

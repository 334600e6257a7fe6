package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// cert_prune removes the records it names that expired before its Before,
// with every key that lists them (expiry, names, provisioner, properties,
// the revoked lists of the complete CRL and of the shard); it leaves a
// record that has not expired long enough, refuses a Before later than the
// entry's time or too many serials without changing anything, and applies
// again as a no-op.
func TestCertPruneRemovesRecordsAndEveryKeyThatListsThem(t *testing.T) {
	f, b := lifecycle(t)
	ok := func(at time.Time, typ CmdType, p any) {
		t.Helper()
		if err := apply(t, f, b.entry(typ, at, p)); err != nil {
			t.Fatalf("%d: %v", typ, err)
		}
	}
	lb, four := "http://lb.example", 4
	ok(t0, CmdAuthorityUpdate, AuthorityUpdate{Name: "default", BaseURL: &lb, CRL: &CRLSettings{Shards: four}})
	var toks []Token
	for i := range 3 {
		toks = append(toks, Token{ID: fmt.Sprintf("x%d", i), Hash: hashOf(fmt.Sprintf("x%d", i)), Provisioner: "p",
			SANs: []string{"b.example"}, ExpiresAt: t0.Add(time.Hour), Properties: map[string]string{"site": "x"}})
	}
	ok(t0, CmdTokenCreate, TokenCreate{Tokens: toks})
	for i := range 3 {
		c := provCert(fmt.Sprintf("1%d", i), "b.example")
		if i == 2 {
			c.NotAfter = t0.Add(72 * time.Hour) // lives longer
		}
		ok(t0, CmdIssue, Issue{TokenHash: hashOf(fmt.Sprintf("x%d", i)), Cert: c})
	}
	ok(t0, CmdRevoke, Revoke{Serial: "11", Reason: 1, By: "admin"})

	later := t0.Add(48 * time.Hour) // the first two (and "01") expired a day ago
	before := t0.Add(25 * time.Hour)
	refused := []struct {
		at time.Time
		p  CertPrune
	}{
		{later, CertPrune{Before: later.Add(time.Second), Serials: []string{"10"}}},
		{later, CertPrune{Before: before, Serials: make([]string, MaxPruneBatch+1)}},
	}
	digest := f.Digest()
	for _, r := range refused {
		if err := apply(t, f, b.entry(CmdCertPrune, r.at, r.p)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d serials before %s: %v, want malformed", len(r.p.Serials), r.p.Before, err)
		}
	}
	if f.Digest() != digest {
		t.Fatal("a refused prune changed the state")
	}
	prune := CertPrune{Before: before, Serials: []string{"10", "11", "12", "99"}}
	ok(later, CmdCertPrune, prune)
	for _, s := range []string{"10", "11"} {
		if _, err := f.Cert(s); !errors.Is(err, ErrNotFound) {
			t.Errorf("record %s kept: %v", s, err)
		}
	}
	for _, s := range []string{"12", "01"} { // not expired long enough; not named
		if _, err := f.Cert(s); err != nil {
			t.Errorf("record %s removed: %v", s, err)
		}
	}
	f.view(func(tx *bolt.Tx) error {
		for _, bucket := range [][]byte{bCerts, bCertsByExpiry, bCertsBySAN, bCertsByProv, bCertsByProp, bRevoked} {
			tx.Bucket(bucket).ForEach(func(k, v []byte) error {
				for _, s := range []string{"10", "11"} {
					if bytes.HasSuffix(k, []byte("\x00"+s)) || bytes.HasSuffix(k, []byte(s)) && bytes.Equal(bucket, bCertsByExpiry) ||
						bytes.Contains(v, []byte(`"serial":"`+s+`"`)) {
						t.Errorf("%s still lists %s: %q", bucket, s, k)
					}
				}
				return nil
			})
		}
		return nil
	})
	digest = f.Digest()
	ok(later.Add(time.Minute), CmdCertPrune, prune)
	if f.Digest() != digest {
		t.Error("the same prune applied again changed the state")
	}
}

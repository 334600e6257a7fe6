package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/soft"
)

// fleet issues n certificates (dev-1.fleet.example ...) and returns them
// with their issuer.
func (c *testCA) fleet(t *testing.T, n int) ([]*x509.Certificate, *x509.Certificate) {
	t.Helper()
	ctx := context.Background()
	toks, err := c.MintTokens(ctx, c.admin, TokenRequest{SANs: []string{"dev-{n}.fleet.example"}, Count: n})
	if err != nil {
		t.Fatal(err)
	}
	key := ecKey(t, elliptic.P256())
	leaves := make([]*x509.Certificate, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range next {
				csr := csrPEM(t, key, &x509.CertificateRequest{DNSNames: []string{fmt.Sprintf("dev-%d.fleet.example", i+1)}})
				iss, err := c.signToken(ctx, csr, toks[i].Secret)
				if err == nil {
					leaves[i], err = x509.ParseCertificate(iss.Cert.DER)
				}
				errs[i] = err
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("certificate %d: %v", i+1, err)
		}
	}
	a, err := c.f.Authority(DefaultAuthority)
	if err != nil {
		t.Fatal(err)
	}
	return leaves, mustParse(a.Issuers[0].Chain[0])
}

// askAll asks once about each certificate and checks each answer.
func (c *testCA) askAll(t *testing.T, leaves []*x509.Certificate, issuer *x509.Certificate, want int) {
	t.Helper()
	for i, leaf := range leaves {
		der, _, err := c.OCSP(context.Background(), ocspRequest(t, leaf.SerialNumber, issuer, crypto.SHA256))
		if err != nil {
			t.Fatalf("certificate %d: %v", i+1, err)
		}
		r, err := ocsp.ParseResponseForCert(der, leaf, issuer)
		if err != nil || r.Status != want {
			t.Fatalf("certificate %d: status %v, %v", i+1, r, err)
		}
	}
}

// An attacker who cycles through more certificates than the memory cache
// holds (serials are public: the CRL lists the revoked ones, devices show
// theirs in handshakes) gets each certificate's answer signed once per
// half validity all the same: the signing cost is bounded by the
// certificates asked about, never by the request rate or the cache size.
func TestOCSPSignsOncePerCertificateWhateverTheCacheSize(t *testing.T) {
	const n = 3000
	c := newTestCAWith(t, func(cfg *Config) { cfg.OCSPCacheBytes = 1 << 20 })
	leaves, issuer := c.fleet(t, n)
	before := c.signs.total()
	c.askAll(t, leaves, issuer, ocsp.Good)
	if got := c.signs.total() - before; got != n {
		t.Fatalf("first round over %d certificates: %d signatures, want %d", n, got, n)
	}
	if kept := c.ocsp.len(); kept >= n {
		t.Fatalf("the memory cache holds all %d answers: the test does not exceed it", kept)
	}
	c.askAll(t, leaves, issuer, ocsp.Good)
	c.askAll(t, leaves, issuer, ocsp.Good)
	if got := c.signs.total() - before; got != n {
		t.Fatalf("three rounds over %d certificates with a 1 MiB cache: %d signatures, want %d", n, got, n)
	}
}

// restart is the same node started again: the same state, a new memory
// cache and new signers (counted with the others), the answer store
// closed and opened again.
func (c *testCA) restart(t *testing.T) *testCA {
	t.Helper()
	path := c.store.Path()
	if err := c.store.Close(); err != nil {
		t.Fatal(err)
	}
	store, err := OpenOCSPStore(path, OCSPStoreOptions{Now: c.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	next := *c
	next.store = store
	next.CA = New(Config{State: c.f, Proposer: &localRaft{f: c.f, now: c.clock.Now}, Now: c.clock.Now,
		Signers: &signer.Cache{AllowInsecure: true, Observe: c.signs.observe}, OCSPStore: store})
	return &next
}

// Answers survive a restart: the node serves the very answers it signed
// before, still valid, and signs nothing.
func TestOCSPAnswersSurviveARestart(t *testing.T) {
	c := newTestCA(t)
	leaves, issuer := c.fleet(t, 20)
	before := make([][]byte, len(leaves))
	for i, leaf := range leaves {
		before[i] = c.ask(t, leaf, issuer).Raw
	}
	c.clock.Advance(20 * time.Minute)
	signs := c.signs.total()
	c = c.restart(t)
	for i, leaf := range leaves {
		if r := c.ask(t, leaf, issuer); r.Status != ocsp.Good || !bytes.Equal(r.Raw, before[i]) {
			t.Fatalf("certificate %d after a restart: status %d, the same answer %v", i+1, r.Status, bytes.Equal(r.Raw, before[i]))
		}
	}
	if n := c.signs.total() - signs; n != 0 {
		t.Fatalf("after a restart, %d certificates asked about again: %d signatures, want 0", len(leaves), n)
	}
	// Past half their validity they are signed afresh, once each.
	c.clock.Advance(11 * time.Minute)
	c.askAll(t, leaves, issuer, ocsp.Good)
	c.askAll(t, leaves, issuer, ocsp.Good)
	if n := c.signs.total() - signs; n != len(leaves) {
		t.Fatalf("past half the validity: %d signatures for %d certificates", n, len(leaves))
	}
}

// Answers leave the disk once they are no longer served (half their
// validity), so the file holds only what was asked about lately.
func TestOCSPStorePrunesStaleAnswers(t *testing.T) {
	c := newTestCAWith(t, func(cfg *Config) { cfg.OCSPCacheBytes = 64 << 10 })
	leaves, issuer := c.fleet(t, 200)
	c.askAll(t, leaves[:100], issuer, ocsp.Good)
	c.clock.Advance(20 * time.Minute)
	c.askAll(t, leaves[100:], issuer, ocsp.Good)
	c = c.restart(t) // commits everything pending
	if n := c.store.count(); n != 200 {
		t.Fatalf("%d answers on disk, want 200", n)
	}
	c.clock.Advance(11 * time.Minute) // the first hundred are stale
	if n, err := c.store.Prune(c.clock.Now()); err != nil || n != 100 {
		t.Fatalf("pruned %d answers (%v), want the 100 stale ones", n, err)
	}
	if n := c.store.count(); n != 100 {
		t.Fatalf("%d answers on disk after pruning, want 100", n)
	}
	signs := c.signs.total()
	c.askAll(t, leaves[100:], issuer, ocsp.Good)
	if n := c.signs.total() - signs; n != 0 {
		t.Fatalf("answers still fresh were signed again after pruning: %d signatures", n)
	}
	c.clock.Advance(20 * time.Minute)
	if n, err := c.store.Prune(c.clock.Now()); err != nil || n != 100 {
		t.Fatalf("pruned %d answers (%v), want the other 100", n, err)
	}
	var expiries int
	c.store.db.View(func(tx *bolt.Tx) error { expiries = tx.Bucket(bOCSPExpiry).Stats().KeyN; return nil })
	if n := c.store.count(); n != 0 || expiries != 0 {
		t.Fatalf("after every answer went stale: %d answers and %d expiry entries on disk", n, expiries)
	}
}

// A revoked certificate is answered revoked at once, though its "good"
// answer is on disk and still fresh, and after a restart too.
func TestOCSPStoredGoodIsNeverServedAfterRevocation(t *testing.T) {
	c := newTestCAWith(t, func(cfg *Config) { cfg.OCSPCacheBytes = 64 << 10 })
	leaves, issuer := c.fleet(t, 200)
	c.askAll(t, leaves, issuer, ocsp.Good) // the first are out of memory now
	victim := leaves[0]
	if _, err := c.Revoke(context.Background(), RevokeRequest{Serial: SerialHex(victim.SerialNumber), Reason: "keyCompromise", Admin: c.admin}); err != nil {
		t.Fatal(err)
	}
	if r := c.ask(t, victim, issuer); r.Status != ocsp.Revoked || r.RevocationReason != ocsp.KeyCompromise {
		t.Fatalf("right after the revocation: status %d reason %d", r.Status, r.RevocationReason)
	}
	c = c.restart(t)
	if r := c.ask(t, victim, issuer); r.Status != ocsp.Revoked {
		t.Fatalf("after a restart: status %d", r.Status)
	}
	if r := c.ask(t, leaves[1], issuer); r.Status != ocsp.Good {
		t.Fatalf("a bystander: status %d", r.Status)
	}
}

// A store file that does not open is replaced by an empty one: it costs
// signing again, never the node's start.
func TestOCSPStoreStartsAfreshFromADamagedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ocsp.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a bolt file "), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenOCSPStore(path, OCSPStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	s.put("k", []byte("answer"), now.Add(time.Minute))
	if der, _, ok := s.get("k", now); !ok || string(der) != "answer" {
		t.Fatalf("the new store: %q %v", der, ok)
	}
}

// A responder key replaced under the same URI (a KMS alias pointed at a
// new key, say after a compromise) retires what the old key signed, from
// memory and disk alike; a renewed certificate for the same key does not.
func TestOCSPNewResponderKeyUnderTheSameURIRetiresOldAnswers(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	leaf, issuer := c.issued(t, "alias.example")
	r := c.setResponder(t)
	first := c.ask(t, leaf, issuer)
	if first.Certificate == nil || !first.Certificate.Equal(mustParse(r.Certs[0].DER)) {
		t.Fatal("not answered by the responder")
	}
	if _, _, err := soft.Generate(strings.TrimPrefix(r.KeyURI, respKeyScheme+":")); err != nil {
		t.Fatal(err)
	}
	c.signers.Close() // the node lets go of the old key, as at a restart
	r2, err := c.SetOCSPResponder(ctx, DelegateRequest{Name: DefaultAuthority, Key: KeySpec{URI: r.KeyURI}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string, c *testCA) {
		t.Helper()
		got := c.ask(t, leaf, issuer)
		if got.Certificate == nil || !got.Certificate.Equal(mustParse(r2.Certs[0].DER)) || got.CheckSignatureFrom(got.Certificate) != nil {
			t.Fatalf("%s the key changed under %s: not answered by the new key (the old answer: %v)", when, r.KeyURI, bytes.Equal(got.Raw, first.Raw))
		}
	}
	check("once", c)
	check("after a restart once", c.restart(t))
}

// BenchmarkOCSPAnswer is one request for a known certificate whose answer
// is signed already: from memory, and from disk when memory holds nothing
// (one bolt read).
func BenchmarkOCSPAnswer(b *testing.B) {
	for _, bc := range []struct {
		name  string
		bytes int
	}{{"memory", 0}, {"disk", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			c := newTestCAWith(b, func(cfg *Config) { cfg.OCSPCacheBytes = bc.bytes })
			t := &testing.T{}
			leaf, issuer := c.issued(t, "bench.example")
			req := ocspRequest(t, leaf.SerialNumber, issuer, crypto.SHA256)
			if _, _, err := c.OCSP(context.Background(), req); err != nil {
				b.Fatal(err)
			}
			signs := c.signs.total()
			b.ResetTimer()
			for range b.N {
				if _, _, err := c.OCSP(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
			if n := c.signs.total() - signs; n != 0 {
				b.Fatalf("%d signatures", n)
			}
		})
	}
}

package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmap/zlint/v3/lint"
	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/soft"
)

// signCount counts the signatures a test CA's keys make, by key scheme.
type signCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *signCount) observe(scheme string, _ time.Duration, _ error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]int{}
	}
	s.n[scheme]++
}

func (s *signCount) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := 0
	for _, n := range s.n {
		t += n
	}
	return t
}

// issued gets a certificate for name and returns it with its issuer.
func (c *testCA) issued(t testing.TB, name string) (*x509.Certificate, *x509.Certificate) {
	t.Helper()
	iss, err := c.signToken(context.Background(), csrPEM(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{DNSNames: []string{name}}), c.token(t, name))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(iss.Cert.DER)
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.f.Authority(DefaultAuthority)
	if err != nil {
		t.Fatal(err)
	}
	return leaf, mustParse(a.Issuers[0].Chain[0])
}

func ocspRequest(t testing.TB, serial *big.Int, issuer *x509.Certificate, h crypto.Hash) []byte {
	t.Helper()
	req, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: serial}, issuer, &ocsp.RequestOptions{Hash: h})
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// ask sends one OCSP request for leaf and checks the signed answer.
func (c *testCA) ask(t *testing.T, leaf, issuer *x509.Certificate) *ocsp.Response {
	t.Helper()
	der, statuses, err := c.OCSP(context.Background(), ocspRequest(t, leaf.SerialNumber, issuer, crypto.SHA256))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ocsp.ParseResponseForCert(der, leaf, issuer)
	if err != nil {
		t.Fatalf("OCSP answer for %s: %v", leaf.Subject.CommonName, err)
	}
	want := map[int]string{ocsp.Good: OCSPGood, ocsp.Revoked: OCSPRevoked}[r.Status]
	if len(statuses) != 1 || statuses[0] != want {
		t.Errorf("statuses for metrics %v, want [%s]", statuses, want)
	}
	return r
}

// A serial the CA never issued, or an issuer it does not run, gets the
// unsigned "unauthorized" answer: no signature however many are asked,
// and no cached answer for a real certificate is pushed out by them.
func TestOCSPUnknownSerialsAreUnauthorizedAndNeverSigned(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	leaf, issuer := c.issued(t, "known.example")
	if r := c.ask(t, leaf, issuer); r.Status != ocsp.Good {
		t.Fatalf("known certificate: status %d", r.Status)
	}
	before := c.signs.total()
	for i := range 10000 {
		serial := new(big.Int).Add(leaf.SerialNumber, big.NewInt(int64(i+1)))
		der, statuses, err := c.OCSP(ctx, ocspRequest(t, serial, issuer, crypto.SHA256))
		if err != nil {
			t.Fatalf("unknown serial %d: %v", i, err)
		}
		if !bytes.Equal(der, ocsp.UnauthorizedErrorResponse) || statuses != nil {
			t.Fatalf("unknown serial %d: answer is not the unsigned unauthorized response (%d bytes)", i, len(der))
		}
	}
	// An issuer this CA does not run.
	_, otherKey, err := soft.Generate(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := CreateRoot(otherKey, "Somebody Else", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	der, _, err := c.OCSP(ctx, ocspRequest(t, leaf.SerialNumber, other, crypto.SHA1))
	if err != nil || !bytes.Equal(der, ocsp.UnauthorizedErrorResponse) {
		t.Fatalf("foreign issuer: %v, %d bytes", err, len(der))
	}
	if n := c.signs.total() - before; n != 0 {
		t.Fatalf("10,000 requests for unknown serials made %d signatures, want 0", n)
	}
	if r := c.ask(t, leaf, issuer); r.Status != ocsp.Good || c.signs.total() != before {
		t.Fatalf("known certificate after the flood: status %d, %d new signatures (its cached answer was evicted)",
			r.Status, c.signs.total()-before)
	}
}

// One certificate asked about by many clients at once costs one signature;
// the answer is served until half its validity has passed; a revocation
// is answered at once with a new signature, never from the cached "good".
func TestOCSPSignsOncePerCertificateAndStatus(t *testing.T) {
	c := newTestCA(t)
	leaf, issuer := c.issued(t, "busy.example")
	before := c.signs.total()
	req := ocspRequest(t, leaf.SerialNumber, issuer, crypto.SHA256)
	var wg sync.WaitGroup
	var bad atomic.Int32
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				der, _, err := c.OCSP(context.Background(), req)
				if err != nil {
					bad.Add(1)
					continue
				}
				if r, err := ocsp.ParseResponseForCert(der, leaf, issuer); err != nil || r.Status != ocsp.Good {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of 640 concurrent requests failed or were not good", bad.Load())
	}
	if n := c.signs.total() - before; n != 1 {
		t.Fatalf("640 concurrent requests for one certificate made %d signatures, want 1", n)
	}
	first := c.ask(t, leaf, issuer)

	// Before half the validity: the same answer, no signature.
	validity := first.NextUpdate.Sub(first.ThisUpdate)
	c.clock.Advance(validity/2 - 2*time.Minute)
	if r := c.ask(t, leaf, issuer); !r.ThisUpdate.Equal(first.ThisUpdate) || c.signs.total()-before != 1 {
		t.Fatalf("before half the validity (%s): thisUpdate %s -> %s, %d signatures", validity, first.ThisUpdate, r.ThisUpdate, c.signs.total()-before)
	}
	// After it: signed afresh, once.
	c.clock.Advance(4 * time.Minute)
	for range 10 {
		if r := c.ask(t, leaf, issuer); !r.ThisUpdate.After(first.ThisUpdate) {
			t.Fatalf("past half the validity: still thisUpdate %s", r.ThisUpdate)
		}
	}
	if n := c.signs.total() - before; n != 2 {
		t.Fatalf("after half the validity: %d signatures in all, want 2", n)
	}

	// Revoked: the cached good answer is never served again.
	if _, err := c.Revoke(context.Background(), RevokeRequest{Serial: SerialHex(leaf.SerialNumber), Reason: "keyCompromise", Admin: c.admin}); err != nil {
		t.Fatal(err)
	}
	afterRevoke := c.signs.total() // the revocation signed a CRL
	for range 50 {
		r := c.ask(t, leaf, issuer)
		if r.Status != ocsp.Revoked || r.RevocationReason != ocsp.KeyCompromise {
			t.Fatalf("after revocation: status %d reason %d", r.Status, r.RevocationReason)
		}
	}
	if n := c.signs.total() - afterRevoke; n != 1 {
		t.Fatalf("50 requests after the revocation made %d signatures, want 1", n)
	}
}

// respKeyScheme is a software key whose signatures are counted apart from
// the issuing key's ("softkey"): the delegated responder's key in tests.
const respKeyScheme = "ocsptestkey"

func init() {
	signer.Register(respKeyScheme, func(_ context.Context, uri string, _ signer.Options) (signer.Key, error) {
		b, err := os.ReadFile(strings.TrimPrefix(uri, respKeyScheme+":"))
		if err != nil {
			return nil, err
		}
		s, err := soft.ParsePrivateKey(b)
		return &testKey{uri: uri, s: s}, err
	}, func(_ context.Context, uri, _ string, _ signer.Options) (string, error) {
		_, _, err := soft.Generate(strings.TrimPrefix(uri, respKeyScheme+":"))
		return uri, err
	}, true)
}

type testKey struct {
	uri string
	s   crypto.Signer
}

func (k *testKey) Public() crypto.PublicKey { return k.s.Public() }
func (k *testKey) URI() string              { return k.uri }
func (k *testKey) Close() error             { return nil }
func (k *testKey) SignContext(_ context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.s.Sign(rand.Reader, digest, opts)
}

func (s *signCount) of(scheme string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[scheme]
}

// setResponder gives the default authority a delegated responder with a
// new counted key.
func (c *testCA) setResponder(t *testing.T) *fsm.OCSPResponder {
	t.Helper()
	uri := respKeyScheme + ":" + filepath.Join(t.TempDir(), "ocsp.key")
	r, err := c.SetOCSPResponder(context.Background(), DelegateRequest{Name: DefaultAuthority, Key: KeySpec{URI: uri, Create: true}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// With a delegated responder, OCSP answers are signed by its key, carry
// its certificate (OCSPSigning, nocheck, issued by the issuer, shorter
// lived), and cost the issuing key nothing.
func TestOCSPDelegatedResponderSignsAnswers(t *testing.T) {
	c := newTestCA(t)
	leaf, issuer := c.issued(t, "delegated.example")
	r := c.setResponder(t)
	if len(r.Certs) != 1 || r.Version != 1 {
		t.Fatalf("responder %+v", r)
	}
	rc := mustParse(r.Certs[0].DER)
	if err := rc.CheckSignatureFrom(issuer); err != nil {
		t.Errorf("responder certificate not signed by the issuer: %v", err)
	}
	nocheck := false
	for _, e := range rc.Extensions {
		if e.Id.Equal(oidOCSPNoCheck) {
			nocheck = !e.Critical && bytes.Equal(e.Value, asn1.NullBytes)
		}
	}
	if !nocheck || rc.IsCA || rc.KeyUsage != x509.KeyUsageDigitalSignature ||
		len(rc.ExtKeyUsage) != 1 || rc.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning {
		t.Errorf("responder certificate: nocheck %v, CA %v, key usage %v, EKU %v", nocheck, rc.IsCA, rc.KeyUsage, rc.ExtKeyUsage)
	}
	if life := rc.NotAfter.Sub(rc.NotBefore); life > DefaultOCSPResponderTTL+backdate || !rc.NotAfter.Before(issuer.NotAfter) {
		t.Errorf("responder certificate lives %s, until %s (issuer until %s)", life, rc.NotAfter, issuer.NotAfter)
	}
	private, _ := lint.GlobalRegistry().Filter(lint.FilterOptions{ExcludeSources: publicPolicySources})
	if errs, warns := lintResults(t, rc.Raw, private); len(errs) > 0 || len(warns) > 0 {
		t.Errorf("responder certificate lints: errors %v, warnings %v", errs, warns)
	}

	issuerSigns := c.signs.of("softkey")
	for range 20 {
		resp := c.ask(t, leaf, issuer)
		if resp.Status != ocsp.Good || resp.Certificate == nil || !resp.Certificate.Equal(rc) {
			t.Fatalf("answer: status %d, certificate %v", resp.Status, resp.Certificate != nil)
		}
		if err := resp.CheckSignatureFrom(rc); err != nil {
			t.Fatalf("answer not signed by the responder key: %v", err)
		}
	}
	if n, d := c.signs.of("softkey")-issuerSigns, c.signs.of(respKeyScheme); n != 0 || d != 1 {
		t.Fatalf("20 answers: %d signatures by the issuing key (want 0), %d by the responder (want 1)", n, d)
	}

	// Removed: the issuing key signs again, and its answer carries no
	// certificate.
	if err := c.DeleteDelegate(context.Background(), fsm.RoleOCSP, DefaultAuthority); err != nil {
		t.Fatal(err)
	}
	resp := c.ask(t, leaf, issuer)
	if resp.Certificate != nil || resp.CheckSignatureFrom(issuer) != nil {
		t.Fatal("after removal, the answer is not signed by the issuer")
	}
	if err := c.DeleteDelegate(context.Background(), fsm.RoleOCSP, DefaultAuthority); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing it twice: %v", err)
	}
}

func TestOCSPResponderRefusesBadSettings(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	a, _ := c.f.Authority(DefaultAuthority)
	key := KeySpec{URI: respKeyScheme + ":" + filepath.Join(t.TempDir(), "k.key"), Create: true}
	for name, req := range map[string]DelegateRequest{
		"the issuing key":   {Name: DefaultAuthority, Key: KeySpec{URI: a.Issuers[0].KeyURI}},
		"no key":            {Name: DefaultAuthority},
		"too short a life":  {Name: DefaultAuthority, Key: key, TTL: time.Hour},
		"too long a life":   {Name: DefaultAuthority, Key: key, TTL: 365 * 24 * time.Hour},
		"unknown authority": {Name: "nope", Key: key},
	} {
		if _, err := c.SetOCSPResponder(ctx, req); !errors.Is(err, ErrInvalidRequest) && !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := c.f.OCSPResponder(DefaultAuthority); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("a refused request stored a responder: %v", err)
	}
}

// The leader renews the responder's certificate a third of its life
// before its end; a node never signs with one that would end before its
// answer does, falling back to the issuing key instead.
func TestOCSPResponderRenewal(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	leaf, issuer := c.issued(t, "renew.example")
	r := c.setResponder(t)
	first := mustParse(r.Certs[0].DER)

	c.clock.Advance(24 * time.Hour)
	before := c.signs.total()
	if err := c.RefreshDelegates(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.f.OCSPResponder(DefaultAuthority); got.Version != 1 || c.signs.total() != before {
		t.Fatalf("a day in: refresh changed the responder (version %d, %d signatures)", got.Version, c.signs.total()-before)
	}
	if resp := c.ask(t, leaf, issuer); resp.Certificate == nil || !resp.Certificate.Equal(first) {
		t.Fatal("a day in: not answered by the responder")
	}

	// Unrenewed, within an answer's validity of its end: the issuer signs.
	c.clock.Advance(DefaultOCSPResponderTTL - 24*time.Hour - 30*time.Minute)
	if resp := c.ask(t, leaf, issuer); resp.Certificate != nil || resp.CheckSignatureFrom(issuer) != nil {
		t.Fatal("near its end, the responder certificate still signs")
	}
	if err := c.RefreshDelegates(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := c.f.OCSPResponder(DefaultAuthority)
	renewed := mustParse(got.Certs[0].DER)
	if got.Version != 2 || !renewed.NotAfter.After(first.NotAfter) || renewed.CheckSignatureFrom(issuer) != nil {
		t.Fatalf("after refresh: version %d, until %s (was %s)", got.Version, renewed.NotAfter, first.NotAfter)
	}
	if resp := c.ask(t, leaf, issuer); resp.Certificate == nil || !resp.Certificate.Equal(renewed) {
		t.Fatal("not answered with the renewed certificate")
	}
	// Renewed once: the next round leaves it.
	if err := c.RefreshDelegates(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := c.f.OCSPResponder(DefaultAuthority); again.Version != 2 {
		t.Fatalf("renewed twice: version %d", again.Version)
	}
}

// An issuer added to an authority with a responder is certified at once.
func TestOCSPResponderCoversNewIssuers(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	dir := t.TempDir()
	a, err := c.CreateAuthority(ctx, CreateAuthorityRequest{Name: "second",
		RootKey: KeySpec{URI: "softkey:" + filepath.Join(dir, "root.key"), Create: true},
		Key:     KeySpec{URI: "softkey:" + filepath.Join(dir, "one.key"), Create: true}})
	if err != nil {
		t.Fatal(err)
	}
	uri := respKeyScheme + ":" + filepath.Join(dir, "ocsp.key")
	if _, err := c.SetOCSPResponder(ctx, DelegateRequest{Name: a.Name, Key: KeySpec{URI: uri, Create: true}}); err != nil {
		t.Fatal(err)
	}
	a, err = c.RotateIssuer(ctx, RotateRequest{Name: a.Name, Key: KeySpec{URI: "softkey:" + filepath.Join(dir, "two.key"), Create: true}, KeepOthers: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.f.OCSPResponder(a.Name)
	if err != nil || len(a.Issuers) != 2 || len(r.Certs) != 2 {
		t.Fatalf("after a second issuer: %d issuers, responder %+v, %v", len(a.Issuers), r, err)
	}
	for _, iss := range a.Issuers {
		rc := r.Cert(iss.ID)
		if rc == nil || mustParse(rc.DER).CheckSignatureFrom(mustParse(iss.Chain[0])) != nil {
			t.Errorf("issuer %s: no responder certificate it signed", iss.ID)
		}
	}
}

// The answer cache stays within its byte budget, pushes out the least
// recently used first, and never serves an answer past its half-life.
func TestOCSPCacheIsBoundedAndKeepsRecent(t *testing.T) {
	c := ocspCache{max: 100 << 10}
	now := time.Now()
	der := make([]byte, 1000)
	c.put("hot", der, now.Add(time.Hour))
	for i := range 1000 {
		c.put(fmt.Sprintf("k%d", i), der, now.Add(time.Hour))
		if i%10 == 0 {
			if _, ok := c.get("hot", now); !ok {
				t.Fatalf("a recently used answer was pushed out after %d puts", i)
			}
		}
	}
	if c.size > c.max || c.len() > c.max/1000 {
		t.Fatalf("cache holds %d bytes in %d answers, budget %d", c.size, c.len(), c.max)
	}
	if _, ok := c.get("k0", now); ok {
		t.Error("the least recently used answer was kept")
	}
	if _, ok := c.get("hot", now.Add(time.Hour)); ok {
		t.Error("an answer was served at its half-life")
	}
	if _, ok := c.m["hot"]; ok {
		t.Error("a stale answer was kept")
	}
}

// A node that cannot open the responder's key still answers, signed by
// the issuing key.
func TestOCSPFallsBackToIssuerWithoutResponderKey(t *testing.T) {
	c := newTestCA(t)
	leaf, issuer := c.issued(t, "fallback.example")
	r := c.setResponder(t)
	if err := os.Remove(strings.TrimPrefix(r.KeyURI, respKeyScheme+":")); err != nil {
		t.Fatal(err)
	}
	// Another node: the same state, its own signers.
	other := &testCA{CA: New(Config{State: c.f, Proposer: &localRaft{f: c.f, now: c.clock.Now}, Now: c.clock.Now,
		Signers: &signer.Cache{AllowInsecure: true}})}
	resp := other.ask(t, leaf, issuer)
	if resp.Status != ocsp.Good || resp.Certificate != nil || resp.CheckSignatureFrom(issuer) != nil {
		t.Fatalf("without the responder key: status %d, certificate %v", resp.Status, resp.Certificate != nil)
	}
}

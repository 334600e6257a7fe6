package authority

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/soft"
)

// localRaft commits straight into a real FSM: a one-node log without the
// network, so these tests exercise the authority and the FSM together.
type localRaft struct {
	mu  sync.Mutex
	f   *fsm.FSM
	idx uint64
	now func() time.Time
	// oldServer: the cluster has a server of the previous release, which
	// reads log format 1 only; the gate refuses what needs more, as the
	// cluster's leader does.
	oldServer bool
}

func (l *localRaft) Apply(_ context.Context, env *fsm.Envelope) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.oldServer && env.Format() > 1 {
		return fsm.ErrUpgrading
	}
	e := *env
	e.Time = l.now().UnixNano()
	data, err := e.Encode()
	if err != nil {
		return err
	}
	l.idx++
	if err, ok := l.f.Apply(&raft.Log{Index: l.idx, Type: raft.LogCommand, Data: data}).(error); ok {
		return err
	}
	return nil
}

func (l *localRaft) Barrier(context.Context) error                         { return nil }
func (l *localRaft) Propagate(context.Context) ([]string, []string, error) { return nil, nil, nil }

type testCA struct {
	*CA
	f     *fsm.FSM
	root  *x509.Certificate
	clock *offsetClock
	admin *fsm.Admin
	signs *signCount // signatures made, by key scheme
	store *OCSPStore // OCSP answers on disk
}

// offsetClock is the real clock moved forward by tests.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *offsetClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	return newTestCAWith(t, nil)
}

// newTestCAWith is newTestCA with its Config adjusted by configure.
func newTestCAWith(t testing.TB, configure func(*Config)) *testCA {
	t.Helper()
	dir := t.TempDir()
	f, err := fsm.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	now := time.Now()
	_, rootKey, err := soft.Generate(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := CreateRoot(rootKey, "Test Root", 24*time.Hour*365, now)
	if err != nil {
		t.Fatal(err)
	}
	uri, interKey, err := soft.Generate(filepath.Join(dir, "inter.key"))
	if err != nil {
		t.Fatal(err)
	}
	inter, err := CreateIntermediate(root, rootKey, interKey.Public(), "Test Intermediate", 24*time.Hour*180, now)
	if err != nil {
		t.Fatal(err)
	}
	clock, signs := &offsetClock{}, &signCount{}
	// As a node has it: the answers on disk behind the memory cache.
	store, err := OpenOCSPStore(filepath.Join(dir, "ocsp.db"), OCSPStoreOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := Config{State: f, Proposer: &localRaft{f: f, now: clock.Now}, Now: clock.Now,
		Signers: &signer.Cache{AllowInsecure: true, Observe: signs.observe}, OCSPStore: store}
	if configure != nil {
		configure(&cfg)
	}
	ca := New(cfg)
	if err := ca.PutAuthority(context.Background(), fsm.Authority{Name: DefaultAuthority, Root: root.Raw,
		Issuers: []fsm.Issuer{{Chain: [][]byte{inter.Raw}, KeyURI: uri}}, BaseURL: "http://ca.example.com:8080"}); err != nil {
		t.Fatal(err)
	}
	if err := ca.PutProvisioner(context.Background(), fsm.Provisioner{Name: "default", Kind: fsm.KindEnrollmentToken,
		Authority: DefaultAuthority, Policy: DefaultPolicy()}, 0); err != nil {
		t.Fatal(err)
	}
	return &testCA{CA: ca, f: f, root: root, clock: clock, admin: &fsm.Admin{ID: "test-admin", Role: RoleAdmin}, signs: signs, store: store}
}

func (c *testCA) signToken(ctx context.Context, csr []byte, token string) (*Issued, error) {
	return c.Sign(ctx, SignRequest{CSR: csr, Token: token})
}

func (c *testCA) token(t testing.TB, names ...string) string {
	t.Helper()
	m, err := c.MintToken(context.Background(), c.admin, TokenRequest{SANs: names, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return m.Secret
}

func csrPEM(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func ecKey(t testing.TB, c elliptic.Curve) crypto.Signer {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignCarriesRequestedNamesOnly(t *testing.T) {
	c := newTestCA(t)
	spiffe, _ := url.Parse("spiffe://prod/db")
	tok := c.token(t, "db.example", "10.0.0.7", "spiffe://prod/db", "extra.example")
	csr := csrPEM(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "DB.Example.", Organization: []string{"ignored"}},
		IPAddresses: []net.IP{net.ParseIP("10.0.0.7")},
		URIs:        []*url.URL{spiffe},
	})
	iss, err := c.signToken(context.Background(), csr, tok)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(iss.Cert.DER)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "db.example" || len(leaf.Subject.Organization) != 0 {
		t.Errorf("subject %s: only the (canonical) common name is copied", leaf.Subject)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "db.example" || len(leaf.IPAddresses) != 1 || len(leaf.URIs) != 1 {
		t.Errorf("SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.URIs)
	}
	if leaf.IsCA || leaf.NotAfter.Sub(leaf.NotBefore) > DefaultCertTTL+backdate+time.Second {
		t.Errorf("leaf CA=%v validity %s", leaf.IsCA, leaf.NotAfter.Sub(leaf.NotBefore))
	}
	rec, err := c.f.Cert(iss.Cert.Serial)
	if err != nil || rec.TokenID == "" || len(rec.SANs) != 3 {
		t.Fatalf("record %+v: %v", rec, err)
	}
}

func TestSignKeyTypes(t *testing.T) {
	c := newTestCA(t)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for name, k := range map[string]crypto.Signer{
		"P-256": ecKey(t, elliptic.P256()), "P-384": ecKey(t, elliptic.P384()), "RSA-2048": rsa2048, "Ed25519": ed,
	} {
		t.Run(name, func(t *testing.T) {
			tok := c.token(t, "k.example")
			_, err := c.signToken(context.Background(), csrPEM(t, k, &x509.CertificateRequest{DNSNames: []string{"k.example"}}), tok)
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCSRErrorsWrapBadCSR(t *testing.T) {
	for _, in := range [][]byte{nil, []byte("x"), []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")} {
		if _, err := ParseCSR(in); !errors.Is(err, ErrBadCSR) {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func TestPutAuthorityRejectsMismatchedKey(t *testing.T) {
	c := newTestCA(t)
	a, _ := c.f.Authority(DefaultAuthority)
	other, _, err := soft.Generate(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	a.Name, a.Issuers[0].KeyURI = "second", other
	if err := c.PutAuthority(context.Background(), *a); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("authority with a key that is not the certificate's: %v", err)
	}
	if _, err := c.f.Authority("second"); !errors.Is(err, fsm.ErrNotFound) {
		t.Error("refused authority was stored")
	}
}

func TestNormalizeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Example.COM.", "example.com"},
		{"*.example.com", "*.example.com"},
		{"10.0.0.1", "10.0.0.1"},
		{"::ffff:10.0.0.1", "10.0.0.1"},
		{"2001:DB8::1", "2001:db8::1"},
		{"spiffe://prod/db", "spiffe://prod/db"},
		{"ops@example.com", "ops@example.com"},
		{"under_score.example", "under_score.example"},
	}
	for _, tt := range tests {
		if got, err := normalizeName(tt.in); err != nil || got != tt.want {
			t.Errorf("normalizeName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "a..b", "-a.example", "a-.example", "*.com", "a.*.example", "bad name", "sp ace://x", "x@", "a\x00b", string(make([]byte, 300))} {
		if got, err := normalizeName(bad); err == nil {
			t.Errorf("normalizeName(%q) = %q, want an error", bad, got)
		}
	}
}

func TestNormalizeSerial(t *testing.T) {
	for in, want := range map[string]string{"00AB": "ab", "0a:bc:de": "abcde", "1": "1"} {
		if got, err := NormalizeSerial(in); err != nil || got != want {
			t.Errorf("NormalizeSerial(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0", "xyz", "-1", "12 34", string(make([]byte, 65))} {
		if _, err := NormalizeSerial(bad); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("NormalizeSerial(%q): %v", bad, err)
		}
	}
}

func TestSerialsAreLargeAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		n, err := NewSerial()
		if err != nil {
			t.Fatal(err)
		}
		if n.Sign() <= 0 || n.BitLen() > 159 {
			t.Fatalf("serial %x out of range", n)
		}
		seen[SerialHex(n)] = true
	}
	if len(seen) != 1000 {
		t.Fatal("repeated serial")
	}
}

// More tokens expire than one prune entry removes (a burst of enrollments
// minted together): one PruneTokens call removes them all.
func TestABurstOfExpiredTokensIsPrunedAtOnce(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	const n = 12500 // one entry removes 10,000
	for minted := 0; minted < n; minted += MaxTokenBatch {
		if _, err := c.MintTokens(ctx, c.admin, TokenRequest{SANs: []string{"d{n}.example"}, Count: min(MaxTokenBatch, n-minted), TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	c.clock.Advance(2 * time.Minute)
	idx := c.f.AppliedIndex()
	if err := c.PruneTokens(ctx); err != nil {
		t.Fatal(err)
	}
	if c.f.HasTokensExpiredBefore(c.clock.Now()) {
		t.Error("expired tokens remain after one call")
	}
	if entries := c.f.AppliedIndex() - idx; entries != 2 {
		t.Errorf("%d prune entries for %d tokens, want 2", entries, n)
	}
}

func TestExpiredTokensArePruned(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	short, err := c.MintToken(ctx, c.admin, TokenRequest{SANs: []string{"s.example"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	used := c.token(t, "u.example")
	if _, err := c.signToken(ctx, csrPEM(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{DNSNames: []string{"u.example"}}), used); err != nil {
		t.Fatal(err)
	}
	// Nothing has expired: no command is proposed.
	idx := c.f.AppliedIndex()
	if err := c.PruneTokens(ctx); err != nil || c.f.AppliedIndex() != idx {
		t.Fatalf("prune with nothing expired: %v, index %d -> %d", err, idx, c.f.AppliedIndex())
	}
	c.clock.Advance(2 * time.Minute)
	if err := c.PruneTokens(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.f.TokenByID(short.Token.ID); !errors.Is(err, fsm.ErrNotFound) {
		t.Errorf("expired token kept: %v", err)
	}
	// The used token lives until its own expiry, so a replay still reads "used".
	if _, err := c.signToken(ctx, csrPEM(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{DNSNames: []string{"u.example"}}), used); !errors.Is(err, fsm.ErrTokenUsed) {
		t.Errorf("replay after prune: %v", err)
	}
	c.clock.Advance(2 * time.Hour)
	if err := c.PruneTokens(ctx); err != nil {
		t.Fatal(err)
	}
	if c.f.HasTokensExpiredBefore(c.clock.Now()) {
		t.Error("expired tokens remain")
	}
}

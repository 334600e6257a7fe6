package authority

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"

	"github.com/quorumca/quorumca/fsm"
)

// A SCEP RA is a delegated key of its own role: an RSA key that decrypts,
// certified for key encipherment by each issuer, apart from the OCSP
// responder; an EC key, or a CA key, is refused; removed, SCEP is off.
func TestSCEPRA(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := c.SetDelegate(ctx, fsm.RoleSCEP, DelegateRequest{Name: DefaultAuthority, Key: KeySpec{URI: "softkey:" + filepath.Join(dir, "ec.key"), Create: true, Algorithm: "EC_P256"}}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("an EC key as SCEP RA: %v", err)
	}
	a, _ := c.state.Authority(DefaultAuthority)
	if _, err := c.SetDelegate(ctx, fsm.RoleSCEP, DelegateRequest{Name: DefaultAuthority, Key: KeySpec{URI: a.Issuers[0].KeyURI}}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("the issuing key as SCEP RA: %v", err)
	}
	if _, err := c.SCEP(ctx, DefaultAuthority); !errors.Is(err, ErrNoSCEPRA) {
		t.Fatalf("SCEP before an RA: %v", err)
	}
	r, err := c.SetDelegate(ctx, fsm.RoleSCEP, DelegateRequest{Name: DefaultAuthority, Key: KeySpec{URI: "softkey:" + filepath.Join(dir, "ra.key"), Create: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.OCSPResponder(DefaultAuthority); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a SCEP RA taken for the OCSP responder: %v", err)
	}
	ra, err := c.SCEP(ctx, DefaultAuthority)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Certs) != len(ra.Certs) || ra.Cert.KeyUsage&x509.KeyUsageKeyEncipherment == 0 || ra.Cert.NotAfter.Sub(ra.Cert.NotBefore) > DefaultSCEPRATTL+backdate {
		t.Fatalf("RA certificate: %v, %s to %s", ra.Cert.KeyUsage, ra.Cert.NotBefore, ra.Cert.NotAfter)
	}
	pub := ra.Cert.PublicKey.(*rsa.PublicKey)
	ct, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, []byte("content key"), nil)
	if pt, err := ra.Decrypt.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA256}); err != nil || string(pt) != "content key" {
		t.Fatalf("the RA key decrypts: %q %v", pt, err)
	}
	if err := c.DeleteDelegate(ctx, fsm.RoleSCEP, DefaultAuthority); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SCEP(ctx, DefaultAuthority); !errors.Is(err, ErrNoSCEPRA) {
		t.Fatalf("SCEP after the RA was removed: %v", err)
	}
	if _, err := c.SetDelegate(ctx, "nope", DelegateRequest{Name: DefaultAuthority}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("an unknown role: %v", err)
	}
}

// A key in one role is refused for another, and for another authority's
// role: no RSA decryption key that answers strangers also signs OCSP
// answers, and no delegated key is an authority's CA key.
func TestADelegatedKeyHasOneRole(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	uri := "softkey:" + filepath.Join(t.TempDir(), "ra.key")
	if _, err := c.SetDelegate(ctx, fsm.RoleSCEP, DelegateRequest{Name: DefaultAuthority, Key: KeySpec{URI: uri, Create: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetDelegate(ctx, fsm.RoleOCSP, DelegateRequest{Name: DefaultAuthority, Key: KeySpec{URI: uri}}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("the SCEP RA's key as OCSP responder: %v", err)
	}
	// The same key again for the same role is a renewal, not a second role.
	if _, err := c.SetDelegate(ctx, fsm.RoleSCEP, DelegateRequest{Name: DefaultAuthority, Key: KeySpec{URI: uri}}); err != nil {
		t.Fatalf("the RA's key again: %v", err)
	}
	ra, _ := c.SCEP(ctx, DefaultAuthority)
	if len(ra.Cert.UnknownExtKeyUsage) != 1 || !ra.Cert.UnknownExtKeyUsage[0].Equal(oidCMCRA) {
		t.Fatalf("RA certificate EKU %v", ra.Cert.UnknownExtKeyUsage)
	}
}

// The other way round: a key that is a delegated key may not become an
// authority's issuing key or root (an outside tester had rotated another
// authority onto the SCEP RA's key).
func TestADelegatedKeyIsNoCAKey(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	dir := t.TempDir()
	ra := "softkey:" + filepath.Join(dir, "ra.key")
	if _, err := c.SetDelegate(ctx, fsm.RoleSCEP, DelegateRequest{Name: DefaultAuthority, Key: KeySpec{URI: ra, Create: true}}); err != nil {
		t.Fatal(err)
	}
	for name, req := range map[string]CreateAuthorityRequest{
		"issuing key": {Name: "second", RootKey: KeySpec{URI: "softkey:" + filepath.Join(dir, "root2.key"), Create: true}, Key: KeySpec{URI: ra}},
		"root key":    {Name: "third", RootKey: KeySpec{URI: ra}, Key: KeySpec{URI: "softkey:" + filepath.Join(dir, "i3.key"), Create: true}},
	} {
		if _, err := c.CreateAuthority(ctx, req); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("the SCEP RA's key as %s: %v", name, err)
		}
	}
	if as, _ := c.state.Authorities(); len(as) != 1 {
		t.Fatalf("%d authorities after the refusals", len(as))
	}
}

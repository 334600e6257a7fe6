//go:build pkcs11 && cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/ThalesGroup/crypto11"

	"github.com/quorumca/quorumca/signer"
)

// Compiled is true in this build.
const Compiled = true

const (
	defaultConcurrency = 8
	healthTTL          = 5 * time.Second
)

func init() { signer.Register(Scheme, open, create, false) }

// One crypto11 context per module and token, shared by its keys: each holds
// a login and a session pool.
var (
	ctxMu    sync.Mutex
	contexts = map[string]*shared{}
)

type shared struct {
	ctx  *crypto11.Context
	refs int
}

func acquire(r ref, o signer.Options) (*crypto11.Context, func(), error) {
	ctxMu.Lock()
	defer ctxMu.Unlock()
	id := r.module + "\x00" + r.token
	if s, ok := contexts[id]; ok {
		s.refs++
		return s.ctx, func() { releaseCtx(id) }, nil
	}
	pin, err := r.pin()
	if err != nil {
		return nil, nil, err
	}
	sessions := o.Concurrency
	if sessions <= 0 {
		sessions = defaultConcurrency
	}
	wait := o.MaxWait
	if wait <= 0 {
		wait = 2 * time.Second
	}
	c, err := crypto11.Configure(&crypto11.Config{Path: r.module, TokenLabel: r.token, Pin: pin,
		MaxSessions: sessions + 1, PoolWaitTimeout: wait})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: pkcs11 token %q: %v", signer.ErrUnavailable, r.token, err)
	}
	contexts[id] = &shared{ctx: c, refs: 1}
	return c, func() { releaseCtx(id) }, nil
}

func releaseCtx(id string) {
	ctxMu.Lock()
	defer ctxMu.Unlock()
	s := contexts[id]
	if s == nil {
		return
	}
	if s.refs--; s.refs == 0 {
		s.ctx.Close()
		delete(contexts, id)
	}
}

type key struct {
	uri     string
	ref     ref
	ctx     *crypto11.Context
	release func()
	s       crypto11.Signer
	lim     *signer.Limiter

	mu        sync.Mutex
	healthAt  time.Time
	healthErr error
}

func open(_ context.Context, uri string, o signer.Options) (signer.Key, error) {
	r, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	c, release, err := acquire(r, o)
	if err != nil {
		return nil, err
	}
	s, err := find(c, r)
	if err != nil {
		release()
		return nil, err
	}
	return &key{uri: uri, ref: r, ctx: c, release: release, s: s, lim: signer.NewLimiter(o, defaultConcurrency)}, nil
}

func find(c *crypto11.Context, r ref) (crypto11.Signer, error) {
	var label []byte
	if r.object != "" {
		label = []byte(r.object)
	}
	s, err := c.FindKeyPair(r.id, label)
	if err != nil {
		return nil, fmt.Errorf("%w: pkcs11 %s: %v", signer.ErrUnavailable, r.object, err)
	}
	if s == nil {
		return nil, fmt.Errorf("pkcs11: no key pair %q in token %q", r.object, r.token)
	}
	return s, nil
}

func (k *key) Public() crypto.PublicKey { return k.s.Public() }
func (k *key) URI() string              { return k.uri }
func (k *key) Close() error             { k.release(); return nil }

// Limiter exposes the key's budget, for tests and metrics.
func (k *key) Limiter() *signer.Limiter { return k.lim }

// SignContext signs in the token. The PKCS#11 call itself cannot be
// cancelled; the context bounds the wait for a session.
func (k *key) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	release, err := k.lim.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release(false)
	sig, err := k.s.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: pkcs11 %s: %v", signer.ErrUnavailable, k.ref.object, err)
	}
	return sig, nil
}

// DecryptContext decrypts with an RSA key in the token (CKM_RSA_PKCS or
// CKM_RSA_PKCS_OAEP), within the key's budget like a signature. A bad
// ciphertext is the caller's fault, not the token's: it is not
// ErrUnavailable.
func (k *key) DecryptContext(ctx context.Context, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	d, ok := k.s.(crypto.Decrypter) // crypto11's RSA key pairs implement it
	if !ok {
		return nil, fmt.Errorf("%w: pkcs11 %s is not an RSA key", signer.ErrCannotDecrypt, k.ref.object)
	}
	release, err := k.lim.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release(false)
	pt, err := d.Decrypt(rand.Reader, ciphertext, opts)
	if err != nil {
		return nil, fmt.Errorf("pkcs11 %s: decrypt: %w", k.ref.object, err)
	}
	return pt, nil
}

// Health looks the key up again, at most every healthTTL.
func (k *key) Health(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.healthAt) < healthTTL {
		return k.healthErr
	}
	_, err := find(k.ctx, k.ref)
	k.healthAt, k.healthErr = time.Now(), err
	return err
}

// create generates a key pair in the token, labelled with the URI's object.
func create(_ context.Context, uri, alg string, o signer.Options) (string, error) {
	r, err := parseURI(uri)
	if err != nil {
		return "", err
	}
	c, release, err := acquire(r, o)
	if err != nil {
		return "", err
	}
	defer release()
	if r.id == nil {
		r.id = make([]byte, 8)
		if _, err := rand.Read(r.id); err != nil {
			return "", err
		}
	}
	label := []byte(r.object)
	switch alg {
	case signer.AlgECP256:
		_, err = c.GenerateECDSAKeyPairWithLabel(r.id, label, elliptic.P256())
	case signer.AlgECP384:
		_, err = c.GenerateECDSAKeyPairWithLabel(r.id, label, elliptic.P384())
	case signer.AlgRSA2048:
		// crypto11 gives RSA private keys CKA_DECRYPT as well as CKA_SIGN
		// (SCEP decrypts with them).
		_, err = c.GenerateRSAKeyPairWithLabel(r.id, label, 2048)
	case signer.AlgRSA3072:
		_, err = c.GenerateRSAKeyPairWithLabel(r.id, label, 3072)
	default:
		return "", fmt.Errorf("pkcs11: unsupported algorithm %q", alg)
	}
	if err != nil {
		return "", fmt.Errorf("pkcs11: generate %s: %w", alg, err)
	}
	return r.uri(), nil
}

// Package signer gives the CA access to signing keys it never holds: each
// backend (KMS, PKCS#11, and a software key for dev mode) is opened by a key
// URI whose scheme selects it.
package signer

import (
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quorumca/quorumca/internal/errs"
)

// Key is a signing key in some backend. Sign takes a context because a
// backend may be remote, slow and rate limited.
type Key interface {
	Public() crypto.PublicKey
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
	URI() string
	Close() error
}

// HealthChecker is implemented by keys whose backend can be probed.
type HealthChecker interface {
	Health(ctx context.Context) error
}

// Decrypter is implemented by keys that can decrypt (RSA keys of the soft
// and PKCS#11 backends): SCEP requests arrive encrypted to such a key. opts
// is nil or *rsa.PKCS1v15DecryptOptions (PKCS#1 v1.5), or *rsa.OAEPOptions.
// A backend's non-RSA key answers ErrCannotDecrypt.
type Decrypter interface {
	DecryptContext(ctx context.Context, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error)
}

// Opener opens the key named by uri. The scheme has already been matched.
type Opener func(ctx context.Context, uri string, opts Options) (Key, error)

// Options bound how a node uses a remote or shared signer. Zero values take
// the backend's defaults.
type Options struct {
	// Concurrency caps signatures in flight per key on this node; under
	// throttling the cap adapts down and recovers slowly.
	Concurrency int
	// Rate and Burst are this node's token bucket per key (signatures per
	// second): its share of an account-wide quota. 0: no bucket.
	Rate  float64
	Burst int
	// Timeout bounds each call to the backend.
	Timeout time.Duration
	// MaxWait is how long a request may wait for budget before it is shed
	// with ErrOverloaded.
	MaxWait time.Duration
	// NewKeyPolicyFrom names a key (in the backend's URI form, e.g.
	// awskms:arn:...) whose access policy a key this node creates gets,
	// so a key made from a running cluster is confined like the keys it
	// joins: without it, a new KMS key has the account's default policy,
	// which any IAM policy in the account may extend.
	NewKeyPolicyFrom string
	// NewKeyTags are set on a key this node creates (the cluster's tag:
	// what its IAM policy allows it to create).
	NewKeyTags map[string]string
}

// KeyCreator is implemented by backends that can create keys (KMS
// CreateKey, PKCS#11 key generation). It returns the new key's URI.
type KeyCreator func(ctx context.Context, uri, algorithm string, opts Options) (string, error)

// Key algorithms a creator may be asked for.
const (
	AlgECP256  = "EC_P256"
	AlgECP384  = "EC_P384"
	AlgRSA2048 = "RSA_2048"
	AlgRSA3072 = "RSA_3072"
	AlgRSA4096 = "RSA_4096"
)

var (
	ErrUnknownScheme = errors.New("signer: unknown key URI scheme")
	ErrBadURI        = errors.New("signer: malformed key URI")
	// ErrOverloaded: the signing budget (rate or concurrency) is spent;
	// try again shortly.
	ErrOverloaded = errs.New(errs.RateLimited, "overloaded", "signer: signing budget exhausted")
	// ErrUnavailable: the key's backend cannot be reached or refuses.
	ErrUnavailable = errs.New(errs.Unavailable, "signer_unavailable", "signer: backend unavailable")
	// ErrCannotDecrypt: the key is not one that decrypts (not RSA).
	ErrCannotDecrypt = errors.New("signer: key cannot decrypt")
)

// ErrInsecure: a software key, refused unless insecure signers are allowed.
var ErrInsecure = errs.New(errs.Unavailable, "signer_refused", "signer: software keys are for development only")

type backend struct {
	open     Opener
	create   KeyCreator
	insecure bool
}

var (
	regMu    sync.RWMutex
	backends = map[string]backend{}
)

// Register makes a backend available for URIs with the given scheme. An
// insecure backend (keys in memory or files) is refused unless the Cache
// allows it. create may be nil.
func Register(scheme string, open Opener, create KeyCreator, insecure bool) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := backends[scheme]; dup {
		panic("signer: scheme " + scheme + " registered twice")
	}
	backends[scheme] = backend{open: open, create: create, insecure: insecure}
}

func lookupBackend(uri string) (backend, error) {
	s, err := Scheme(uri)
	if err != nil {
		return backend{}, err
	}
	regMu.RLock()
	b, ok := backends[s]
	regMu.RUnlock()
	if !ok {
		return backend{}, fmt.Errorf("%w %q (this build has: %s)", ErrUnknownScheme, s, strings.Join(Schemes(), ", "))
	}
	return b, nil
}

// Schemes lists the registered backends.
func Schemes() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	var out []string
	for s := range backends {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Scheme returns the scheme of a key URI ("awskms" in "awskms:key-id").
func Scheme(uri string) (string, error) {
	s, _, ok := strings.Cut(uri, ":")
	if !ok || s == "" {
		return "", fmt.Errorf("%w: %q has no scheme", ErrBadURI, uri)
	}
	return s, nil
}

// Open opens a key by URI with default options, insecure backends allowed.
// Nodes use a Cache instead.
func Open(ctx context.Context, uri string) (Key, error) {
	b, err := lookupBackend(uri)
	if err != nil {
		return nil, err
	}
	return b.open(ctx, uri, Options{})
}

// CryptoSigner adapts a Key to crypto.Signer for the standard library (for
// x509.CreateCertificate), binding ctx to every Sign call.
func CryptoSigner(ctx context.Context, k Key) crypto.Signer { return boundSigner{ctx: ctx, k: k} }

type boundSigner struct {
	ctx context.Context
	k   Key
}

func (b boundSigner) Public() crypto.PublicKey { return b.k.Public() }

func (b boundSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return b.k.SignContext(b.ctx, digest, opts)
}

// CryptoDecrypter adapts k to crypto.Decrypter bound to ctx (pkcs7.Decrypt
// takes one); ok is false when k cannot decrypt: its backend has no
// DecryptContext (AWS KMS cannot do the PKCS#1 v1.5 SCEP clients use) or
// its key is not RSA.
func CryptoDecrypter(ctx context.Context, k Key) (crypto.Decrypter, bool) {
	d, ok := k.(Decrypter)
	if _, isRSA := k.Public().(*rsa.PublicKey); !ok || !isRSA {
		return nil, false
	}
	return boundDecrypter{ctx: ctx, k: k, d: d}, true
}

type boundDecrypter struct {
	ctx context.Context
	k   Key
	d   Decrypter
}

func (b boundDecrypter) Public() crypto.PublicKey { return b.k.Public() }

func (b boundDecrypter) Decrypt(_ io.Reader, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return b.d.DecryptContext(b.ctx, ciphertext, opts)
}

// Cache opens each key URI once and shares the Key, since opening may cost a
// remote call (KMS GetPublicKey) or an HSM login.
type Cache struct {
	Options       Options
	AllowInsecure bool // permit software keys (dev mode, tests)
	// Observe, if set, hears of every signature: the key's scheme, how
	// long it took, and its error. Nodes turn it into metrics.
	Observe func(scheme string, d time.Duration, err error)

	mu   sync.Mutex
	keys map[string]Key
}

// SetObserve sets Observe once the cache may be in use: keys opened from
// then on report their signatures.
func (c *Cache) SetObserve(f func(scheme string, d time.Duration, err error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Observe = f
}

// Get returns the key for uri, opening it on first use.
func (c *Cache) Get(ctx context.Context, uri string) (Key, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.keys[uri]; ok {
		return k, nil
	}
	b, err := lookupBackend(uri)
	if err != nil {
		return nil, err
	}
	if b.insecure && !c.AllowInsecure {
		return nil, fmt.Errorf("%w: %s needs allow_insecure_soft_signer = true", ErrInsecure, uri)
	}
	k, err := b.open(ctx, uri, c.Options)
	if err != nil {
		return nil, err
	}
	if c.Observe != nil {
		scheme, _ := Scheme(uri)
		o := &observed{Key: k, scheme: scheme, observe: c.Observe}
		if _, ok := k.(Decrypter); ok {
			k = observedDecrypter{o}
		} else {
			k = o
		}
	}
	if c.keys == nil {
		c.keys = map[string]Key{}
	}
	c.keys[uri] = k
	return k, nil
}

// Create makes a new key in the backend of uri and returns its URI.
func (c *Cache) Create(ctx context.Context, uri, algorithm string) (string, error) {
	b, err := lookupBackend(uri)
	if err != nil {
		return "", err
	}
	if b.create == nil {
		return "", fmt.Errorf("signer: backend of %s cannot create keys", uri)
	}
	if b.insecure && !c.AllowInsecure {
		return "", fmt.Errorf("%w: %s", ErrInsecure, uri)
	}
	return b.create(ctx, uri, algorithm, c.Options)
}

// Health probes every open key that supports it.
func (c *Cache) Health(ctx context.Context) error {
	c.mu.Lock()
	keys := make([]Key, 0, len(c.keys))
	for _, k := range c.keys {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	for _, k := range keys {
		if h, ok := k.(HealthChecker); ok {
			if err := h.Health(ctx); err != nil {
				return fmt.Errorf("signer %s: %w", k.URI(), err)
			}
		}
	}
	return nil
}

// Close closes every open key.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, k := range c.keys {
		errs = append(errs, k.Close())
	}
	c.keys = nil
	return errors.Join(errs...)
}

// observed reports each signature of a key to an observer.
type observed struct {
	Key
	scheme  string
	observe func(string, time.Duration, error)
}

func (o *observed) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := o.Key.SignContext(ctx, digest, opts)
	o.observe(o.scheme, time.Since(start), err)
	return sig, err
}

func (o *observed) Health(ctx context.Context) error {
	if h, ok := o.Key.(HealthChecker); ok {
		return h.Health(ctx)
	}
	return nil
}

// observedDecrypter is observed for a key that decrypts: the wrapper must not
// hide the ability, nor lend it to a key without it. Decryptions are not
// signatures, so they are not reported.
type observedDecrypter struct{ *observed }

func (o observedDecrypter) DecryptContext(ctx context.Context, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return o.Key.(Decrypter).DecryptContext(ctx, ciphertext, opts)
}

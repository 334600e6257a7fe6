// Package signer gives the CA access to signing keys it never holds: each
// backend (KMS, PKCS#11, and a software key for dev mode) is opened by a key
// URI whose scheme selects it.
package signer

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
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

// Opener opens the key named by uri. The scheme has already been matched.
type Opener func(ctx context.Context, uri string) (Key, error)

var (
	ErrUnknownScheme = errors.New("signer: unknown key URI scheme")
	ErrBadURI        = errors.New("signer: malformed key URI")
	// ErrOverloaded: the signing budget (rate or concurrency) is spent;
	// try again shortly.
	ErrOverloaded = errors.New("signer: signing budget exhausted")
	// ErrUnavailable: the key's backend cannot be reached or refuses.
	ErrUnavailable = errors.New("signer: backend unavailable")
)

var (
	regMu   sync.RWMutex
	openers = map[string]Opener{}
)

// Register makes a backend available for URIs with the given scheme.
func Register(scheme string, open Opener) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := openers[scheme]; dup {
		panic("signer: scheme " + scheme + " registered twice")
	}
	openers[scheme] = open
}

// Scheme returns the scheme of a key URI ("awskms" in "awskms:key-id").
func Scheme(uri string) (string, error) {
	s, _, ok := strings.Cut(uri, ":")
	if !ok || s == "" {
		return "", fmt.Errorf("%w: %q has no scheme", ErrBadURI, uri)
	}
	return s, nil
}

// Open opens a key by URI.
func Open(ctx context.Context, uri string) (Key, error) {
	s, err := Scheme(uri)
	if err != nil {
		return nil, err
	}
	regMu.RLock()
	open, ok := openers[s]
	regMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownScheme, s)
	}
	return open(ctx, uri)
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

// Cache opens each key URI once and shares the Key, since opening may cost a
// remote call (KMS GetPublicKey) or an HSM login.
type Cache struct {
	mu   sync.Mutex
	keys map[string]Key
}

// Get returns the key for uri, opening it on first use.
func (c *Cache) Get(ctx context.Context, uri string) (Key, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.keys[uri]; ok {
		return k, nil
	}
	k, err := Open(ctx, uri)
	if err != nil {
		return nil, err
	}
	if c.keys == nil {
		c.keys = map[string]Key{}
	}
	c.keys[uri] = k
	return k, nil
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

package authority

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// Creating and rotating authorities whose keys live in a KMS or HSM. Keys
// are named by URI; optionally created through the backend first. Only
// certificates and key URIs reach the replicated state.

const (
	defaultRootTTL         = 10 * 365 * 24 * time.Hour
	defaultIntermediateTTL = 5 * 365 * 24 * time.Hour
)

// KeySpec names a key, or asks for one to be created at URI with Algorithm.
type KeySpec struct {
	URI       string
	Create    bool
	Algorithm string // signer.AlgECP256 (default), ...
}

// CreateAuthorityRequest creates an authority whose root key is also in a
// KMS or HSM, so that rotation can sign new intermediates.
type CreateAuthorityRequest struct {
	Name                       string
	RootKey, Key               KeySpec
	RootCommonName, CommonName string
	RootTTL, TTL               time.Duration
	BaseURL                    string
}

func (ca *CA) resolveKey(ctx context.Context, k KeySpec) (signer.Key, error) {
	uri := k.URI
	if k.Create {
		alg := k.Algorithm
		if alg == "" {
			alg = signer.AlgECP256
		}
		var err error
		if uri, err = ca.signers.Create(ctx, k.URI, alg); err != nil {
			return nil, fmt.Errorf("%w: create key: %v", ErrInvalidRequest, err)
		}
	}
	key, err := ca.signers.Get(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("%w: key %s: %v", ErrInvalidRequest, uri, err)
	}
	return key, nil
}

// CreateAuthority signs a root with the root key and an intermediate with
// it for the issuing key, and stores the authority.
func (ca *CA) CreateAuthority(ctx context.Context, req CreateAuthorityRequest) (*fsm.Authority, error) {
	if err := CheckBaseURL(req.BaseURL); err != nil {
		return nil, err
	}
	if _, err := ca.state.Authority(req.Name); err == nil {
		return nil, fmt.Errorf("%w: authority %s exists; use rotate or import to add an issuer", ErrInvalidRequest, req.Name)
	}
	rootKey, err := ca.resolveKey(ctx, req.RootKey)
	if err != nil {
		return nil, err
	}
	key, err := ca.resolveKey(ctx, req.Key)
	if err != nil {
		return nil, err
	}
	now := ca.now()
	root, err := CreateRoot(signer.CryptoSigner(ctx, rootKey), orDefault(req.RootCommonName, req.Name+" root"), orTTL(req.RootTTL, defaultRootTTL), now)
	if err != nil {
		return nil, signError(err)
	}
	inter, err := CreateLinkedIntermediate(root, signer.CryptoSigner(ctx, rootKey), key.Public(), orDefault(req.CommonName, req.Name+" issuing CA"),
		orTTL(req.TTL, defaultIntermediateTTL), now, req.BaseURL, req.Name)
	if err != nil {
		return nil, signError(err)
	}
	a := fsm.Authority{Name: req.Name, Root: root.Raw, RootKeyURI: rootKey.URI(), BaseURL: req.BaseURL,
		Issuers: []fsm.Issuer{{Chain: [][]byte{inter.Raw}, KeyURI: key.URI()}}}
	if err := ca.PutAuthority(ctx, a); err != nil {
		return nil, err
	}
	return ca.state.Authority(req.Name)
}

// IntermediateCSR makes a certificate request for an issuing key, for an
// offline root to sign. It returns the CSR (PEM) and the key's URI.
func (ca *CA) IntermediateCSR(ctx context.Context, k KeySpec, commonName string) ([]byte, string, error) {
	key, err := ca.resolveKey(ctx, k)
	if err != nil {
		return nil, "", err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: orDefault(commonName, "quorumca issuing CA"), Organization: []string{"quorumca"}}}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, signer.CryptoSigner(ctx, key))
	if err != nil {
		return nil, "", signError(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), key.URI(), nil
}

// ImportRequest installs an intermediate signed by an offline root.
type ImportRequest struct {
	Name       string
	Root       []byte // PEM
	Chain      []byte // PEM: the intermediate first, then any others below the root
	Key        string // URI of the intermediate's key
	BaseURL    string
	KeepOthers bool // add beside the current issuers instead of replacing them
	// NewRoot admits a root the authority does not have yet: a root
	// rotation. The new root joins the authority's trust anchors (and
	// /v1/roots) beside the old, which keep verifying what they issued.
	NewRoot bool
}

// ImportIssuer creates an authority from an offline-signed intermediate, or,
// if it exists with the same root, adds the intermediate as a new issuer.
func (ca *CA) ImportIssuer(ctx context.Context, req ImportRequest) (*fsm.Authority, error) {
	if err := CheckBaseURL(req.BaseURL); err != nil {
		return nil, err
	}
	roots, err := ParseCertsPEM(req.Root)
	if err != nil {
		return nil, fmt.Errorf("%w: root: %v", ErrInvalidRequest, err)
	}
	chain, err := ParseCertsPEM(req.Chain)
	if err != nil {
		return nil, fmt.Errorf("%w: chain: %v", ErrInvalidRequest, err)
	}
	iss := fsm.Issuer{KeyURI: req.Key}
	for _, c := range chain {
		if !c.Equal(roots[0]) {
			iss.Chain = append(iss.Chain, c.Raw)
		}
	}
	cur, err := ca.state.Authority(req.Name)
	if errors.Is(err, fsm.ErrNotFound) {
		a := fsm.Authority{Name: req.Name, Root: roots[0].Raw, BaseURL: req.BaseURL, Issuers: []fsm.Issuer{iss}}
		if err := ca.PutAuthority(ctx, a); err != nil {
			return nil, err
		}
		return ca.state.Authority(req.Name)
	}
	if err != nil {
		return nil, err
	}
	known := slices.ContainsFunc(cur.Roots(), func(r []byte) bool { return bytes.Equal(r, roots[0].Raw) })
	switch {
	case !known && !req.NewRoot:
		return nil, fmt.Errorf("%w: authority %s has another root (a root rotation needs new_root)", ErrInvalidRequest, req.Name)
	case !known:
		if !roots[0].IsCA || roots[0].CheckSignatureFrom(roots[0]) != nil {
			return nil, fmt.Errorf("%w: the new root is not a self-signed CA certificate", ErrInvalidRequest)
		}
		return ca.addIssuerRoot(ctx, cur, roots[0], iss, !req.KeepOthers, roots[0].Raw)
	}
	return ca.addIssuer(ctx, cur, roots[0], iss, !req.KeepOthers)
}

// RotateRequest gives an authority a new intermediate signed by its root key.
type RotateRequest struct {
	Name       string
	Key        KeySpec
	CommonName string
	TTL        time.Duration
	KeepOthers bool
}

// RotateIssuer signs a new intermediate with the authority's root key (which
// must be in a KMS or HSM) and makes it the issuer of new certificates. With
// KeepOthers it joins the active issuers instead, spreading issuance.
func (ca *CA) RotateIssuer(ctx context.Context, req RotateRequest) (*fsm.Authority, error) {
	cur, err := ca.state.Authority(req.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: no authority named %q", ErrNotFound, truncate(req.Name))
	}
	if cur.RootKeyURI == "" {
		return nil, fmt.Errorf("%w: authority %s has an offline root: make a CSR, sign it, and import", ErrInvalidRequest, req.Name)
	}
	rootKey, err := ca.signers.Get(ctx, cur.RootKeyURI)
	if err != nil {
		return nil, fmt.Errorf("%w: root key: %w", ErrUnavailable, err)
	}
	key, err := ca.resolveKey(ctx, req.Key)
	if err != nil {
		return nil, err
	}
	root := mustParse(cur.Root)
	inter, err := CreateLinkedIntermediate(root, signer.CryptoSigner(ctx, rootKey), key.Public(),
		orDefault(req.CommonName, req.Name+" issuing CA"), orTTL(req.TTL, defaultIntermediateTTL), ca.now(), cur.BaseURL, cur.Name)
	if err != nil {
		return nil, signError(err)
	}
	return ca.addIssuer(ctx, cur, root, fsm.Issuer{Chain: [][]byte{inter.Raw}, KeyURI: key.URI()}, !req.KeepOthers)
}

func (ca *CA) addIssuer(ctx context.Context, cur *fsm.Authority, root *x509.Certificate, iss fsm.Issuer, retire bool) (*fsm.Authority, error) {
	return ca.addIssuerRoot(ctx, cur, root, iss, retire, nil)
}

// addIssuerRoot is addIssuer that may bring a new root (DER) along.
func (ca *CA) addIssuerRoot(ctx context.Context, cur *fsm.Authority, root *x509.Certificate, iss fsm.Issuer, retire bool, newRoot []byte) (*fsm.Authority, error) {
	if err := ca.checkIssuer(ctx, root, &iss); err != nil {
		return nil, err
	}
	if err := ca.proposeAndRead(ctx, fsm.CmdIssuerAdd, fsm.IssuerAdd{Authority: cur.Name, Issuer: iss, RetireOthers: retire, NewRoot: newRoot}); err != nil {
		return nil, err
	}
	if err := ca.RefreshCRL(ctx, cur.Name, iss.ID, false); err != nil {
		ca.log.Warn("first CRL of new issuer not signed; the leader retries", "authority", cur.Name, "issuer", iss.ID, "err", err)
	}
	if a, err := ca.state.Authority(cur.Name); err == nil {
		if err := ca.refreshDelegates(ctx, a); err != nil {
			ca.log.Warn("delegated keys (OCSP responder, SCEP RA) not certified by the new issuer yet; the leader retries", "authority", cur.Name, "issuer", iss.ID, "err", err)
		}
	}
	return ca.state.Authority(cur.Name)
}

// UpdateRequest changes an authority's settings; nil fields stay.
type UpdateRequest struct {
	Name string
	// RootKey names the root's key in a KMS or HSM: the root then signs
	// CRLs for its intermediates, and rotation can sign new ones. "" clears.
	RootKey *string
	BaseURL *string
	CRL     *fsm.CRLSettings // validity and refresh; zero durations: the defaults
	// CRLShards partitions the CRLs of the authority's issuers that have
	// one CRL (0 or 1: one CRL): its active issuers at once, if it has a
	// base URL, and every issuer made later. An issuer's shards never
	// change: its certificates name their shard's URL.
	CRLShards *int
	// Chain replaces the chain of the issuer whose key its first
	// certificate certifies (an intermediate signed again, for other
	// links or dates): it must chain to one of the authority's roots.
	Chain [][]byte
}

// Bounds of CRL settings: a CRL valid less than this is refetched more
// often than relying parties do; one valid longer hides a lost CA.
const (
	minCRLValidity = 10 * time.Minute
	maxCRLValidity = 366 * 24 * time.Hour
	minCRLRefresh  = time.Minute
	// MaxCRLShards: each shard is signed once per refresh period, idle
	// or not.
	MaxCRLShards = fsm.MaxCRLShards
)

// UpdateAuthority changes an authority's root key, base URL or CRL
// settings.
func (ca *CA) UpdateAuthority(ctx context.Context, req UpdateRequest) (*fsm.Authority, error) {
	cur, err := ca.Authority(req.Name)
	if err != nil {
		return nil, err
	}
	in := fsm.AuthorityUpdate{Name: cur.Name}
	if req.RootKey != nil && *req.RootKey != cur.RootKeyURI {
		if *req.RootKey != "" {
			key, err := ca.signers.Get(ctx, *req.RootKey)
			if err != nil {
				// Why stays in the node's log: the answer would say which
				// files or endpoints exist where the node runs.
				ca.log.Warn("root key does not open", "authority", cur.Name, "uri", truncate(*req.RootKey), "err", err)
				return nil, fmt.Errorf("%w: root key %s does not open (the node's log says why)", ErrInvalidRequest, truncate(*req.RootKey))
			}
			if !SamePublicKey(key.Public(), mustParse(cur.Root).PublicKey) {
				return nil, fmt.Errorf("%w: root key %s is not the key of authority %s's root", ErrInvalidRequest, truncate(*req.RootKey), cur.Name)
			}
		}
		in.RootKeyURI = req.RootKey
	}
	if req.BaseURL != nil && *req.BaseURL != cur.BaseURL {
		if err := CheckBaseURL(*req.BaseURL); err != nil {
			return nil, err
		}
		in.BaseURL = req.BaseURL
	}
	crl := cur.CRL
	if req.CRL != nil {
		crl.Validity, crl.Refresh = req.CRL.Validity, req.CRL.Refresh
	}
	if req.CRLShards != nil {
		crl.Shards = *req.CRLShards
		if crl.Shards < 0 || crl.Shards > MaxCRLShards {
			return nil, fmt.Errorf("%w: crl shards %d: between 0 and %d", ErrInvalidRequest, crl.Shards, MaxCRLShards)
		}
	}
	// Whichever is set last: an issuer added without a base URL would
	// get one CRL, whatever the shards say.
	if base := cmp.Or(in.BaseURL, &cur.BaseURL); crl.Shards > 1 && *base == "" {
		return nil, fmt.Errorf("%w: crl shards need the authority's base_url: certificates name their shard's CRL under it (set crl shards to 0 to clear it)", ErrInvalidRequest)
	}
	if crl != cur.CRL {
		v, r := crl.Validity, crl.Refresh
		if v != 0 && (v < minCRLValidity || v > maxCRLValidity) {
			return nil, fmt.Errorf("%w: crl validity %s: between %s and %s", ErrInvalidRequest, v, minCRLValidity, maxCRLValidity)
		}
		// At most half the validity: a CRL is re-signed with time to spare
		// for a failed attempt or a leader change before it lapses.
		if r != 0 && (r < minCRLRefresh || r > cmp.Or(v, DefaultCRLValidity)/2) {
			return nil, fmt.Errorf("%w: crl refresh %s: at least %s and at most half the validity", ErrInvalidRequest, r, minCRLRefresh)
		}
		in.CRL = &crl
	}
	if len(req.Chain) > 0 {
		ic, err := ca.checkChainUpdate(cur, req.Chain)
		if err != nil {
			return nil, err
		}
		in.IssuerChain = ic
	}
	if in.RootKeyURI == nil && in.BaseURL == nil && in.CRL == nil && in.IssuerChain == nil {
		return cur, nil
	}
	if err := ca.proposeAndRead(ctx, fsm.CmdAuthorityUpdate, in); err != nil {
		return nil, err
	}
	return ca.state.Authority(req.Name)
}

// checkChainUpdate finds the issuer a new chain is for (the same key),
// and checks that the chain is whole and ends under a root of a; nil if
// the issuer has that chain already.
func (ca *CA) checkChainUpdate(a *fsm.Authority, chain [][]byte) (*fsm.IssuerChain, error) {
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: chain: %v", ErrInvalidRequest, err)
		}
		certs[i] = c
	}
	iss := a.Issuer(IssuerID(certs[0]))
	if iss == nil {
		return nil, fmt.Errorf("%w: authority %s has no issuer for the chain's key", ErrInvalidRequest, a.Name)
	}
	if slices.EqualFunc(iss.Chain, chain, bytes.Equal) {
		return nil, nil
	}
	if !certs[0].IsCA || !SamePublicKey(certs[0].PublicKey, mustParse(iss.Chain[0]).PublicKey) {
		return nil, fmt.Errorf("%w: the chain's first certificate is not a CA certificate for issuer %s's key", ErrInvalidRequest, iss.ID)
	}
	for i := 0; i+1 < len(certs); i++ {
		if certs[i].CheckSignatureFrom(certs[i+1]) != nil {
			return nil, fmt.Errorf("%w: the chain is broken at certificate %d", ErrInvalidRequest, i+1)
		}
	}
	if !slices.ContainsFunc(a.Roots(), func(r []byte) bool { return certs[len(certs)-1].CheckSignatureFrom(mustParse(r)) == nil }) {
		return nil, fmt.Errorf("%w: the chain ends under no root of authority %s", ErrInvalidRequest, a.Name)
	}
	return &fsm.IssuerChain{ID: iss.ID, Chain: chain}, nil
}

// SamePublicKey reports whether a and b are the same public key.
func SamePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// CheckBaseURL accepts http(s)://host[:port][/path], or "" for none: what
// goes into every certificate's CRL, OCSP and issuer URLs (IA5String:
// ASCII, no spaces or controls), bounded so it cannot bloat them.
func CheckBaseURL(s string) error {
	if s == "" {
		return nil
	}
	bad := len(s) > maxBaseURL || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' })
	u, err := url.Parse(s)
	if !bad && err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.RawQuery == "" && u.Fragment == "" && u.User == nil {
		if p := u.Port(); p == "" {
			return nil
		} else if n, err := strconv.Atoi(p); err == nil && n >= 1 && n <= 65535 {
			return nil
		}
	}
	return fmt.Errorf("%w: base URL %q: want http(s)://host[:port][/path] in ASCII, at most %d characters", ErrInvalidRequest, truncate(s), maxBaseURL)
}

const maxBaseURL = 512

// Authorities lists every authority.
func (ca *CA) Authorities() ([]*fsm.Authority, error) { return ca.state.Authorities() }

// Authority returns one authority.
func (ca *CA) Authority(name string) (*fsm.Authority, error) {
	a, err := ca.state.Authority(name)
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, fmt.Errorf("%w: no authority named %q", ErrNotFound, truncate(name))
	}
	return a, err
}

func mustParse(der []byte) *x509.Certificate {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(fmt.Sprintf("authority: stored certificate does not parse: %v", err))
	}
	return c
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func orTTL(t, d time.Duration) time.Duration {
	if t <= 0 {
		return d
	}
	return t
}

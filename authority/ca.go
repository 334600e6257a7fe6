// Package authority decides who gets which certificate: token checks, names,
// validity, and the issuance flow. It knows neither HTTP nor Raft; it talks to
// the small interfaces below.
package authority

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
	"github.com/quorumca/quorumca/internal/keyrate"
	"github.com/quorumca/quorumca/signer"

	"golang.org/x/time/rate"
)

// DefaultAuthority is the authority tokens issue from until provisioners
// bind tokens to authorities.
const DefaultAuthority = "default"

// Refusals of requests. Messages add detail with %w.
var (
	ErrInvalidRequest  = errs.New(errs.Invalid, "bad_request", "invalid request")
	ErrBadCSR          = errs.New(errs.Invalid, "bad_csr", "invalid certificate request")
	ErrUnauthenticated = errs.New(errs.Unauthenticated, "unauthorized", "authentication required")
	ErrForbidden       = errs.New(errs.Forbidden, "forbidden", "permission denied")
	ErrNotFound        = errs.New(errs.NotFound, "not_found", "not found")
	ErrUnavailable     = errs.New(errs.Unavailable, "unavailable", "unavailable")
	ErrTooLarge        = errs.New(errs.TooLarge, "too_large", "request too large")
	// ErrNoAuthority: the cluster has no authority yet (before the first
	// one is created or imported). A node is then not ready, but nothing is
	// wrong with it: a script that waits for a new server may accept it.
	ErrNoAuthority = errs.New(errs.Unavailable, "no_authority", "no authority yet")
)

// State is this node's applied view of the replicated state.
type State interface {
	Authority(name string) (*fsm.Authority, error)
	Authorities() ([]*fsm.Authority, error)
	TokenByHash(hash []byte) (*fsm.Token, error)
	Cert(serial string) (*fsm.Cert, error)
	Device(provisioner, id string) (*fsm.Device, error)
	Devices(provisioner, prefix, after string, limit int) ([]*fsm.Device, error)
	AdminByHash(hash []byte) (*fsm.Admin, error)
	HasTokensExpiredBefore(t time.Time) bool
	HasACMEExpiredBefore(t time.Time) bool
	ExpiredCerts(t time.Time, limit int) ([]fsm.Cert, error)
	AuditBefore(t time.Time, limit int) ([]fsm.AuditEntry, error)
	OneTimeUsed(key []byte) bool
	Provisioner(name string) (*fsm.Provisioner, error)
	Provisioners() ([]*fsm.Provisioner, error)
	ServerProvisioners() ([]*fsm.Provisioner, error)
	CRL(authority, issuer string) (*fsm.CRL, error)
	HasCRL(authority, issuer string) bool
	OCSPResponder(authority string) (*fsm.OCSPResponder, error)
	Delegate(role, authority string) (*fsm.OCSPResponder, error)
	Revoked(authority, issuer string, t time.Time) ([]fsm.RevokedEntry, error)
	RevokedMore(authority, issuer string, t time.Time, n int) bool
	StaleCRLs() ([]fsm.IssuerRef, error)
	AdminByCert(serial string) (*fsm.Admin, error)
	Admins() ([]*fsm.Admin, error)
	SearchCerts(q fsm.CertQuery) ([]*fsm.Cert, []byte, error)
	OutstandingTokens(provisioner string, now time.Time, cursor []byte, limit int) ([]*fsm.Token, []byte, error)
	Audit(q fsm.AuditFilter) (fsm.AuditPage, error)
	AuditHead() (uint64, string)
	ACMEOrder(id string) (*fsm.ACMEOrder, []fsm.ACMEAuthz, error)
	AppliedIndex() uint64
	WaitApplied(ctx context.Context, idx uint64) error
}

// Proposer commits commands through Raft. Apply returns once the entry is
// committed on a quorum and applied, with the FSM's business error if any.
// Barrier waits until the local view includes every write the leader has
// acknowledged, for reads that missed locally. Propagate waits until every
// member alive in the leader's view has applied those writes too, and says
// which members confirmed it and which did not (err names the latter).
type Proposer interface {
	Apply(ctx context.Context, env *fsm.Envelope) error
	Barrier(ctx context.Context) error
	Propagate(ctx context.Context) (confirmed, unconfirmed []string, err error)
}

// CA is the issuing authority of one node.
type CA struct {
	state   State
	raft    Proposer
	signers *signer.Cache
	now     func() time.Time
	log     *slog.Logger

	crlMu         sync.Mutex // one CRL signed at a time per node
	maxCRLEntries int
	turn          atomic.Uint64 // round-robin over active issuers
	certs         certCache     // parsed issuer certificates

	ocsp       ocspCache    // signed OCSP answers
	ocspStore  *OCSPStore   // the same, on disk; nil: memory only
	ocspFlight flight       // OCSP answers being signed
	ocspWarned atomic.Int64 // unix time of the last warning about the OCSP responder
	// ocspFreshSigs: signatures of answers made for one request (several
	// certificates, or a nonce), which are not kept, node-wide.
	ocspFreshSigs *rate.Limiter
	// Per certificate lineage, on this node (limits.go).
	renewals, holderRevocations *keyrate.Limiter
	// upgradingUntil: until then (unix ns) commands that need every
	// server on this release are not tried; the cluster said it has an
	// older server (fsm.ErrUpgrading) a moment ago.
	upgradingUntil atomic.Int64
}

// certCache keeps issuer certificates parsed: every issuance, CRL and OCSP
// answer needs its issuer's, and parsing it each time showed in profiles.
// Issuers are few; the map is dropped whole if it ever grows large.
type certCache struct {
	mu sync.Mutex
	m  map[string]*x509.Certificate
}

func (c *certCache) parse(der []byte) (*x509.Certificate, error) {
	c.mu.Lock()
	cert := c.m[string(der)]
	c.mu.Unlock()
	if cert != nil {
		return cert, nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= 256 {
		c.m = map[string]*x509.Certificate{}
	}
	c.m[string(der)] = cert
	c.mu.Unlock()
	return cert, nil
}

// Config wires a CA.
type Config struct {
	State    State
	Proposer Proposer
	Signers  *signer.Cache
	Now      func() time.Time // defaults to time.Now
	Logger   *slog.Logger
	// OCSPCacheBytes bounds the signed OCSP answers kept in memory
	// (0: DefaultOCSPCacheBytes).
	OCSPCacheBytes int
	// OCSPStore keeps signed OCSP answers on disk behind that cache, so
	// each is signed once per half validity however many certificates
	// are asked about. nil: memory only (tests, tools).
	OCSPStore *OCSPStore
	// Limits are the per-lineage limits; zero fields take the defaults.
	Limits LineageLimits
	// MaxCRLEntries is the most certificates one CRL lists (0:
	// DefaultMaxCRLEntries).
	MaxCRLEntries int
}

// New returns a CA.
func New(c Config) *CA {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Signers == nil {
		c.Signers = &signer.Cache{}
	}
	l := c.Limits.withDefaults()
	return &CA{state: c.State, raft: c.Proposer, signers: c.Signers, now: c.Now, log: c.Logger.With("component", "authority"),
		ocsp:              ocspCache{max: c.OCSPCacheBytes},
		ocspStore:         c.OCSPStore,
		maxCRLEntries:     cmp.Or(c.MaxCRLEntries, DefaultMaxCRLEntries),
		ocspFreshSigs:     rate.NewLimiter(OCSPFreshSignaturesPerSecond, 2*OCSPFreshSignaturesPerSecond),
		renewals:          keyrate.New(l.RenewalsPerMinute/60, l.RenewalBurst, 0),
		holderRevocations: keyrate.New(l.HolderRevocationsPerMinute/60, l.HolderRevocationBurst, 0)}
}

func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// propose builds and commits a command.
// The request's origin (who, from where) goes with it into the audit log.
func (ca *CA) propose(ctx context.Context, t fsm.CmdType, payload any) error {
	env, err := fsm.NewEnvelope(t, randomID(8), payload)
	if err != nil {
		return err
	}
	if o := originOf(ctx); o.Actor != "" || o.Remote != "" {
		env.Origin = &o
	}
	return ca.raft.Apply(ctx, env)
}

// upgradeRecheck is how long a node keeps proposing the older form of a
// command after the cluster answered that one of its servers does not read
// the newest log format (it runs an older release, or it did not answer
// the leader's question): about as often as the leader asks again, without
// asking the leader in vain before every request.
const upgradeRecheck = 2 * time.Second

// proposeUpgraded proposes a command that needs every server on this
// release (log format 2). It answers fsm.ErrUpgrading, and keeps answering
// it for upgradeRecheck without asking, while one is not: the caller then
// proposes the older command instead.
func (ca *CA) proposeUpgraded(ctx context.Context, t fsm.CmdType, payload any) error {
	if time.Now().UnixNano() < ca.upgradingUntil.Load() {
		return fsm.ErrUpgrading
	}
	err := ca.propose(ctx, t, payload)
	if errors.Is(err, fsm.ErrUpgrading) {
		ca.upgradingUntil.Store(time.Now().Add(upgradeRecheck).UnixNano())
	}
	return err
}

// proposeAndPropagate commits a configuration change and waits until every
// reachable node has applied it: when an admin call returns, every node
// enforces the change.
func (ca *CA) proposeAndPropagate(ctx context.Context, t fsm.CmdType, payload any) error {
	if err := ca.propose(ctx, t, payload); err != nil {
		return err
	}
	if _, _, err := ca.raft.Propagate(ctx); err != nil {
		ca.log.Warn("change not confirmed by every node", "command", fsm.CommandName(t), "err", err)
	}
	return nil
}

// proposeAndRead commits a command and waits until this node's state shows
// it, for the rare writes (admin operations) that read back what they wrote.
func (ca *CA) proposeAndRead(ctx context.Context, t fsm.CmdType, payload any) error {
	if err := ca.propose(ctx, t, payload); err != nil {
		return err
	}
	return ca.raft.Barrier(ctx)
}

// lookup reads from local state, and on a miss waits for the local view to
// catch up with the leader once before giving up: a record written through
// another node a moment ago may not be applied here yet.
func lookup[T any](ctx context.Context, ca *CA, get func() (T, error)) (T, error) {
	v, err := get()
	if !errors.Is(err, fsm.ErrNotFound) {
		return v, err
	}
	if berr := ca.raft.Barrier(ctx); berr != nil {
		return v, berr
	}
	return get()
}

// PutAuthority checks that the key URI opens and matches the chain, and
// that the chain verifies to the root, then stores the authority.
func (ca *CA) PutAuthority(ctx context.Context, a fsm.Authority) error {
	if err := ca.checkAuthority(ctx, &a); err != nil {
		return err
	}
	if err := ca.proposeAndRead(ctx, fsm.CmdAuthorityPut, a); err != nil {
		return err
	}
	ca.firstCRLs(ctx, a.Name)
	return nil
}

// firstCRLs signs the (empty) CRLs of a new authority or issuer, so it
// serves one from the start.
func (ca *CA) firstCRLs(ctx context.Context, name string) {
	a, err := ca.state.Authority(name)
	if err != nil {
		return
	}
	for _, iss := range a.Issuers {
		for _, id := range crlIDs(&iss) {
			if err := ca.RefreshCRL(ctx, name, id, false); err != nil {
				ca.log.Warn("first CRL not signed; the leader retries", "authority", name, "crl", id, "err", err)
			}
		}
	}
}

// Roots returns the DER of every authority's trust anchor, without duplicates.
func (ca *CA) Roots(ctx context.Context) ([][]byte, error) {
	as, err := ca.state.Authorities()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out [][]byte
	for _, a := range as {
		for _, r := range a.Roots() {
			if !seen[string(r)] {
				seen[string(r)] = true
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// CaughtUp returns once this node has applied every write acknowledged
// before the call, as confirmed by the leader (a read index), or fails
// (ErrNoLeader: a 503) when it cannot be confirmed. Every answer about
// revocation status (a record, OCSP, a CRL) is read after it: a node that
// was paused, cut off or slow never answers from older state than what was
// committed when the request arrived. Concurrent calls share rounds.
func (ca *CA) CaughtUp(ctx context.Context) error { return ca.raft.Barrier(ctx) }

// Health reports whether this node can sign: every authority that issues
// (has an active issuer) has one whose signer responds. An authority whose
// issuers were all revoked issues nothing and fails nothing here.
func (ca *CA) Health(ctx context.Context) error {
	as, err := ca.state.Authorities()
	if err != nil {
		return err
	}
	if len(as) == 0 {
		return ErrNoAuthority
	}
	for _, a := range as {
		var last error
		ok := len(a.ActiveIssuers()) == 0
		for _, iss := range a.ActiveIssuers() {
			if last = ca.keyHealth(ctx, iss.KeyURI); last == nil {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%w: authority %s cannot sign: %v", ErrUnavailable, a.Name, last)
		}
	}
	return nil
}

func (ca *CA) keyHealth(ctx context.Context, uri string) error {
	k, err := ca.signers.Get(ctx, uri)
	if err != nil {
		return err
	}
	if h, ok := k.(signer.HealthChecker); ok {
		return h.Health(ctx)
	}
	return nil
}

// PruneTokens drops tokens that have expired, if there are any. The leader
// calls it periodically.
func (ca *CA) PruneTokens(ctx context.Context) error {
	now := ca.now()
	// One entry removes at most 10,000 tokens and 10,000 one-time IDs; a
	// burst of enrollments (1,500 a second fills that in seven) leaves
	// more, so go on while any are left, within a bound.
	for range maxTokenPruneRounds {
		if !ca.state.HasTokensExpiredBefore(now) {
			return nil
		}
		if err := ca.propose(ctx, fsm.CmdTokenPrune, fsm.TokenPrune{Before: now}); err != nil {
			return err
		}
	}
	return nil
}

// acmeKeep is how long an expired ACME order or authorization is kept:
// a client still polling it a moment after sees it expired, not unknown.
const acmeKeep = 24 * time.Hour

// PruneACME drops ACME orders and authorizations expired for acmeKeep,
// if there are any (their certificates stay). The leader calls it
// periodically; a cluster of an older release is left alone.
func (ca *CA) PruneACME(ctx context.Context) error {
	before := ca.now().Add(-acmeKeep)
	for range maxTokenPruneRounds {
		if !ca.state.HasACMEExpiredBefore(before) {
			return nil
		}
		if err := ca.proposeUpgraded(ctx, fsm.CmdACMEPrune, fsm.ACMEPrune{Before: before}); err != nil {
			if errors.Is(err, fsm.ErrUpgrading) {
				return nil
			}
			return err
		}
	}
	return nil
}

// maxTokenPruneRounds bounds one PruneTokens call: a million of each.
const maxTokenPruneRounds = 100

// AuthorityRoots returns one authority's trust anchors.
func (ca *CA) AuthorityRoots(ctx context.Context, name string) ([][]byte, error) {
	a, err := ca.state.Authority(name)
	if err != nil {
		return nil, fmt.Errorf("%w: no authority named %q", ErrNotFound, truncate(name))
	}
	return a.Roots(), nil
}

// CACerts are what an EST client installs (RFC 7030 section 4.1): the
// chain of the authority's newest active issuer, then its roots.
func (ca *CA) CACerts(ctx context.Context, name string) ([][]byte, error) {
	a, iss, err := ca.issuer(name, "")
	if err != nil {
		return nil, err
	}
	out := slices.Clone(iss.Chain)
	for _, r := range a.Roots() {
		if !slices.ContainsFunc(out, func(c []byte) bool { return bytes.Equal(c, r) }) {
			out = append(out, r)
		}
	}
	return out, nil
}

// IssuerCert returns the DER of an issuer's certificate; issuer "" is the
// newest active one.
func (ca *CA) IssuerCert(ctx context.Context, name, issuer string) ([]byte, error) {
	_, iss, err := ca.issuer(name, issuer)
	if err != nil {
		return nil, err
	}
	return iss.Chain[0], nil
}

// issuer finds an authority's issuer; "" is the newest active one.
func (ca *CA) issuer(name, id string) (*fsm.Authority, *fsm.Issuer, error) {
	a, err := ca.state.Authority(name)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: no authority named %q", ErrNotFound, truncate(name))
	}
	if id == "" {
		if act := a.ActiveIssuers(); len(act) > 0 {
			return a, act[0], nil
		}
		return a, &a.Issuers[len(a.Issuers)-1], nil
	}
	iss := a.Issuer(id)
	if iss == nil {
		return nil, nil, fmt.Errorf("%w: authority %s has no issuer %q", ErrNotFound, name, truncate(id))
	}
	return a, iss, nil
}

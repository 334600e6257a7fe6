// Package authority decides who gets which certificate: token checks, names,
// validity, and the issuance flow. It knows neither HTTP nor Raft; it talks to
// the small interfaces below.
package authority

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// DefaultAuthority is the authority tokens issue from until provisioners
// bind tokens to authorities.
const DefaultAuthority = "default"

// Errors the API maps to statuses. Messages add detail with %w.
var (
	ErrInvalidRequest  = errors.New("invalid request")
	ErrBadCSR          = errors.New("invalid certificate request")
	ErrUnauthenticated = errors.New("authentication required")
	ErrForbidden       = errors.New("permission denied")
	ErrNotFound        = errors.New("not found")
	ErrUnavailable     = errors.New("unavailable")
)

// State is this node's applied view of the replicated state.
type State interface {
	Authority(name string) (*fsm.Authority, error)
	Authorities() ([]*fsm.Authority, error)
	TokenByHash(hash []byte) (*fsm.Token, error)
	Cert(serial string) (*fsm.Cert, error)
	AdminByHash(hash []byte) (*fsm.Admin, error)
	HasTokensExpiredBefore(t time.Time) bool
	OneTimeUsed(key []byte) bool
	Provisioner(name string) (*fsm.Provisioner, error)
	Provisioners() ([]*fsm.Provisioner, error)
	CRL(authority string) (*fsm.CRL, error)
	Revoked(authority string, t time.Time) ([]fsm.RevokedEntry, error)
}

// Proposer commits commands through Raft. Apply returns once the entry is
// committed on a quorum and applied, with the FSM's business error if any.
// Barrier waits until the local view includes every write the leader has
// acknowledged, for reads that missed locally. Propagate waits until every
// member that answers has applied those writes too.
type Proposer interface {
	Apply(ctx context.Context, env *fsm.Envelope) error
	Barrier(ctx context.Context) error
	Propagate(ctx context.Context) error
}

// CA is the issuing authority of one node.
type CA struct {
	state   State
	raft    Proposer
	signers *signer.Cache
	now     func() time.Time
	log     *slog.Logger

	crlMu sync.Mutex // one CRL signed at a time per node
	ocsp  ocspCache
}

// Config wires a CA.
type Config struct {
	State    State
	Proposer Proposer
	Signers  *signer.Cache
	Now      func() time.Time // defaults to time.Now
	Logger   *slog.Logger
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
	return &CA{state: c.State, raft: c.Proposer, signers: c.Signers, now: c.Now, log: c.Logger.With("component", "authority")}
}

func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// propose builds and commits a command.
func (ca *CA) propose(ctx context.Context, t fsm.CmdType, payload any) error {
	env, err := fsm.NewEnvelope(t, randomID(8), payload)
	if err != nil {
		return err
	}
	return ca.raft.Apply(ctx, env)
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
	if err := ca.propose(ctx, fsm.CmdAuthorityPut, a); err != nil {
		return err
	}
	// A new authority serves an (empty) CRL from the start.
	if err := ca.RefreshCRL(ctx, a.Name, false); err != nil {
		ca.log.Warn("first CRL not signed; the leader retries", "authority", a.Name, "err", err)
	}
	return nil
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
		if !seen[string(a.Root)] {
			seen[string(a.Root)] = true
			out = append(out, a.Root)
		}
	}
	return out, nil
}

// Health reports whether this node can sign: an authority exists and its
// signer responds.
func (ca *CA) Health(ctx context.Context) error {
	a, err := ca.state.Authority(DefaultAuthority)
	if err != nil {
		return fmt.Errorf("%w: no authority yet", ErrUnavailable)
	}
	if _, err := ca.signers.Get(ctx, a.KeyURI); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return ca.signers.Health(ctx)
}

// PruneTokens drops tokens that have expired, if there are any. The leader
// calls it periodically.
func (ca *CA) PruneTokens(ctx context.Context) error {
	now := ca.now()
	if !ca.state.HasTokensExpiredBefore(now) {
		return nil
	}
	return ca.propose(ctx, fsm.CmdTokenPrune, fsm.TokenPrune{Before: now})
}

// AuthorityRoots returns one authority's trust anchor.
func (ca *CA) AuthorityRoots(ctx context.Context, name string) ([][]byte, error) {
	a, err := ca.state.Authority(name)
	if err != nil {
		return nil, fmt.Errorf("%w: no authority named %q", ErrNotFound, truncate(name))
	}
	return [][]byte{a.Root}, nil
}

// Issuer returns the DER of an authority's issuing certificate.
func (ca *CA) Issuer(ctx context.Context, name string) ([]byte, error) {
	a, err := ca.state.Authority(name)
	if err != nil {
		return nil, fmt.Errorf("%w: no authority named %q", ErrNotFound, truncate(name))
	}
	return a.Chain[0], nil
}

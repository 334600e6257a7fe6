package authority

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// Tokens are 256 random bits behind a prefix that says what they are (so
// secret scanners can find leaked ones). The cluster stores only SHA-256 of
// the whole string: a stolen data dir yields no usable token, and checking
// one costs a hash and a local lookup.
const (
	enrollPrefix = "qcet_"
	adminPrefix  = "qcat_"
	tokenBytes   = 32
)

const (
	DefaultTokenTTL = 24 * time.Hour
	MinTokenTTL     = time.Minute
	MaxTokenTTL     = 90 * 24 * time.Hour

	maxProperties  = 32
	maxPropertyLen = 256
)

func newSecret(prefix string) string {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// parseSecret checks a token's shape and returns its hash. A malformed token
// is refused without touching state.
func parseSecret(prefix, tok string) ([]byte, bool) {
	body, ok := strings.CutPrefix(tok, prefix)
	if !ok || base64.RawURLEncoding.DecodedLen(len(body)) != tokenBytes {
		return nil, false
	}
	if _, err := base64.RawURLEncoding.DecodeString(body); err != nil {
		return nil, false
	}
	h := sha256.Sum256([]byte(tok))
	return h[:], true
}

// TokenRequest asks for an enrollment token.
type TokenRequest struct {
	Provisioner string // "": the default enrollment-token provisioner
	SANs        []string
	TTL         time.Duration // 0: DefaultTokenTTL
	Properties  map[string]string
}

// MintedToken is a new token: the secret is shown once and never stored.
type MintedToken struct {
	Secret string
	Token  fsm.Token
}

// MintToken creates a single-use enrollment token bound to names, which the
// provisioner's policy must allow.
func (ca *CA) MintToken(ctx context.Context, admin *fsm.Admin, req TokenRequest) (*MintedToken, error) {
	name := req.Provisioner
	if name == "" {
		var err error
		if name, err = ca.defaultTokenProvisioner(); err != nil {
			return nil, err
		}
	}
	prov, err := ca.provisioner(ctx, name, fsm.KindEnrollmentToken)
	if err != nil {
		return nil, err
	}
	sans, err := normalizeNames(req.SANs)
	if err != nil {
		return nil, fmt.Errorf("%w: sans: %v", ErrInvalidRequest, err)
	}
	if err := checkTokenNames(&prov.Policy, sans); err != nil {
		return nil, err
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < MinTokenTTL || ttl > MaxTokenTTL {
		return nil, fmt.Errorf("%w: ttl: must be between %s and %s", ErrInvalidRequest, MinTokenTTL, MaxTokenTTL)
	}
	if err := checkProperties(req.Properties); err != nil {
		return nil, fmt.Errorf("%w: properties: %v", ErrInvalidRequest, err)
	}
	secret := newSecret(enrollPrefix)
	hash, _ := parseSecret(enrollPrefix, secret)
	t := fsm.Token{
		ID:          randomID(12),
		Hash:        hash,
		Provisioner: prov.Name,
		SANs:        sans,
		Properties:  req.Properties,
		ExpiresAt:   ca.now().Add(ttl).UTC(),
		CreatedBy:   admin.ID,
	}
	if err := ca.propose(ctx, fsm.CmdTokenCreate, fsm.TokenCreate{Tokens: []fsm.Token{t}}); err != nil {
		return nil, err
	}
	return &MintedToken{Secret: secret, Token: t}, nil
}

func checkProperties(p map[string]string) error {
	if len(p) > maxProperties {
		return fmt.Errorf("at most %d properties", maxProperties)
	}
	for k, v := range p {
		if k == "" || len(k) > 64 || len(v) > maxPropertyLen {
			return fmt.Errorf("property %q: keys are 1-64 characters, values at most %d", truncate(k), maxPropertyLen)
		}
	}
	return nil
}

// enrollmentToken resolves a presented token to its record, or a business
// error with the same code the FSM would return.
func (ca *CA) enrollmentToken(ctx context.Context, secret string) (*fsm.Token, []byte, error) {
	hash, ok := parseSecret(enrollPrefix, secret)
	if !ok {
		return nil, nil, fsm.ErrTokenInvalid
	}
	t, err := lookup(ctx, ca, func() (*fsm.Token, error) { return ca.state.TokenByHash(hash) })
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, nil, fsm.ErrTokenInvalid
	}
	if err != nil {
		return nil, nil, err
	}
	if t.UsedBy != "" {
		return nil, nil, fsm.ErrTokenUsed
	}
	if !t.RevokedAt.IsZero() {
		return nil, nil, fsm.ErrTokenRevoked
	}
	if !ca.now().Before(t.ExpiresAt) {
		return nil, nil, fsm.ErrTokenExpired
	}
	return t, hash, nil
}

// RevokeToken withdraws an unused enrollment token by its ID.
func (ca *CA) RevokeToken(ctx context.Context, id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%w: token id", ErrInvalidRequest)
	}
	return ca.propose(ctx, fsm.CmdTokenRevoke, fsm.TokenRevoke{ID: id})
}

// Admin roles. Issue-level roles arrive with the admin API.
const RoleAdmin = "admin"

// CreateAdmin stores a new admin credential and returns its bearer token.
func (ca *CA) CreateAdmin(ctx context.Context, name, role string) (string, error) {
	secret := newSecret(adminPrefix)
	hash, _ := parseSecret(adminPrefix, secret)
	a := fsm.Admin{ID: randomID(12), Name: name, Role: role, Hash: hash}
	if err := ca.propose(ctx, fsm.CmdAdminCreate, a); err != nil {
		return "", err
	}
	return secret, nil
}

// AuthenticateAdmin resolves a bearer token to an admin credential.
func (ca *CA) AuthenticateAdmin(ctx context.Context, bearer string) (*fsm.Admin, error) {
	if bearer == "" {
		return nil, fmt.Errorf("%w: an admin bearer token is required", ErrUnauthenticated)
	}
	hash, ok := parseSecret(adminPrefix, bearer)
	if !ok {
		return nil, fmt.Errorf("%w: malformed admin token", ErrUnauthenticated)
	}
	a, err := lookup(ctx, ca, func() (*fsm.Admin, error) { return ca.state.AdminByHash(hash) })
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, fmt.Errorf("%w: unknown admin token", ErrUnauthenticated)
	}
	if err != nil {
		return nil, err
	}
	if !a.ExpiresAt.IsZero() && !ca.now().Before(a.ExpiresAt) {
		return nil, fmt.Errorf("%w: admin token expired", ErrUnauthenticated)
	}
	return a, nil
}

// Authorize checks that an admin may perform an action needing role.
func Authorize(a *fsm.Admin, role string) error {
	if a.Role != RoleAdmin && a.Role != role {
		return fmt.Errorf("%w: role %q may not do this", ErrForbidden, a.Role)
	}
	return nil
}

package authority

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

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

// TokenRequest asks for enrollment tokens.
type TokenRequest struct {
	Provisioner string // "": the default enrollment-token provisioner
	// SANs may hold "{n}", replaced by 1..Count in batches, so each device
	// of a fleet gets its own names ("dev-{n}.fleet.example").
	SANs       []string
	Count      int           // 0 or 1: one token
	TTL        time.Duration // 0: DefaultTokenTTL
	Properties map[string]string
}

// MintedToken is a new token: the secret is shown once and never stored.
type MintedToken struct {
	Secret string
	Token  fsm.Token
}

// MintToken creates one single-use enrollment token bound to names, which
// the provisioner's policy must allow.
func (ca *CA) MintToken(ctx context.Context, admin *fsm.Admin, req TokenRequest) (*MintedToken, error) {
	req.Count = 1
	ms, err := ca.MintTokens(ctx, admin, req)
	if err != nil {
		return nil, err
	}
	return &ms[0], nil
}

// MintTokens creates Count tokens, committed in entries of bounded size
// (tokenbatch.go). All of them are returned, or an error and none.
func (ca *CA) MintTokens(ctx context.Context, admin *fsm.Admin, req TokenRequest) ([]MintedToken, error) {
	name := req.Provisioner
	if name == "" {
		var err error
		if name, err = ca.defaultTokenProvisioner(ctx); err != nil {
			return nil, err
		}
	}
	prov, err := ca.provisioner(ctx, name, fsm.KindEnrollmentToken)
	if err != nil {
		return nil, err
	}
	count := max(req.Count, 1)
	if count > MaxTokenBatch {
		return nil, fmt.Errorf("%w: count: at most %d tokens per request", ErrInvalidRequest, MaxTokenBatch)
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
	expires := ca.now().Add(ttl).UTC()
	out := make([]MintedToken, 0, count)
	var entries tokenEntries
	for n := 1; n <= count; n++ {
		sans, err := normalizeNames(expand(req.SANs, n))
		if err != nil {
			return nil, fmt.Errorf("%w: sans: %v", ErrInvalidRequest, err)
		}
		if err := checkTokenNames(&prov.Policy, sans); err != nil {
			return nil, err
		}
		secret := newSecret(enrollPrefix)
		hash, _ := parseSecret(enrollPrefix, secret)
		out = append(out, MintedToken{Secret: secret, Token: fsm.Token{
			ID: randomID(12), Hash: hash, Provisioner: prov.Name, SANs: sans,
			Properties: req.Properties, ExpiresAt: expires, CreatedBy: admin.ID,
		}})
		if err := entries.add(&out[len(out)-1].Token, count); err != nil {
			return nil, err
		}
	}
	if err := ca.commitTokens(ctx, out, &entries); err != nil {
		return nil, err
	}
	return out, nil
}

// expand replaces "{n}" in each name.
func expand(names []string, n int) []string {
	out := make([]string, len(names))
	for i, s := range names {
		out[i] = strings.ReplaceAll(s, "{n}", strconv.Itoa(n))
	}
	return out
}

// OutstandingTokens lists tokens that can still be used.
func (ca *CA) OutstandingTokens(ctx context.Context, provisioner string, cursor []byte, limit int) ([]*fsm.Token, []byte, error) {
	if err := ca.raft.Barrier(ctx); err != nil {
		return nil, nil, err
	}
	return ca.state.OutstandingTokens(provisioner, ca.now(), cursor, limit)
}

func checkProperties(p map[string]string) error {
	if len(p) > maxProperties {
		return fmt.Errorf("at most %d properties", maxProperties)
	}
	for k, v := range p {
		if k == "" || len(k) > 64 || len(v) > maxPropertyLen {
			return fmt.Errorf("property %q: keys are 1-64 characters, values at most %d", truncate(k), maxPropertyLen)
		}
		if strings.ContainsFunc(k+v, unicode.IsControl) || strings.Contains(k, "=") {
			return fmt.Errorf("property %q: no control characters, and no '=' in a key", truncate(k))
		}
		if k == fsm.DeviceProperty {
			return fmt.Errorf("property %q: names the device of a factory enrollment, set by the CA only", k)
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
	return ca.proposeAndPropagate(ctx, fsm.CmdTokenRevoke, fsm.TokenRevoke{ID: id})
}

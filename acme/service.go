// Package acme is quorumca's ACME server (RFC 8555): JWS requests,
// nonces, accounts, orders, authorizations, challenge validation and
// finalization. Every object lives in the replicated state (fsm), so any
// node answers any request; the authority decides what may be issued. The
// api package carries it over HTTP (api/acme.go) and picks the statuses.
package acme

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// Lifetimes of ACME objects.
const (
	orderLifetime = 24 * time.Hour
	authzLifetime = 24 * time.Hour
	// validationDeadline: a validation not ended by then (its node died)
	// may be started again.
	validationDeadline = 30 * time.Second
	maxContacts        = 10
	ordersPage         = 100
)

// CA is what the service asks of the authority.
type CA interface {
	ACMEProvisioner(ctx context.Context, name string) (*fsm.Provisioner, error)
	CheckACMEIdentifiers(prov *fsm.Provisioner, ids []fsm.ACMEIdentifier) error
	ProposeACME(ctx context.Context, actor string, t fsm.CmdType, payload any) error
	FinalizeACME(ctx context.Context, prov *fsm.Provisioner, o *fsm.ACMEOrder, csr []byte, accountKey crypto.PublicKey) (*authority.Issued, error)
	RenewalInfo(ctx context.Context, serial string) (*authority.RenewalWindow, *fsm.Cert, error)
	Revoke(ctx context.Context, req authority.RevokeRequest) (*authority.Revoked, error)
	Chain(rec *fsm.Cert) [][]byte
}

// State is this node's applied view of the ACME objects.
type State interface {
	ACMEAccount(id string) (*fsm.ACMEAccount, error)
	ACMEAccountByKey(provisioner, thumbprint string) (*fsm.ACMEAccount, error)
	ACMEOrder(id string) (*fsm.ACMEOrder, []fsm.ACMEAuthz, error)
	ACMEAuthz(id string) (*fsm.ACMEAuthz, error)
	ACMEEAB(id string) (*fsm.ACMEEAB, error)
	ACMEOrders(account, after string, limit int) ([]string, error)
	Cert(serial string) (*fsm.Cert, error)
}

// Barrier brings this node's state up to what the leader has committed.
type Barrier interface {
	Barrier(ctx context.Context) error
}

// Config wires a Service.
type Config struct {
	CA        CA
	State     State
	Barrier   Barrier
	Nonces    *Nonces
	Validator *Validator
	// Peers validate from their perspective (acme { perspectives }); Node
	// names this node (its zone when none is configured).
	Peers  Peers
	Node   string
	Logger *slog.Logger
	Now    func() time.Time
}

// Service answers ACME requests.
type Service struct {
	ca        CA
	state     State
	barrier   Barrier
	nonces    *Nonces
	validator *Validator
	peers     Peers
	keys      keyCache
	zone      string
	log       *slog.Logger
	now       func() time.Time
	// ctx bounds validations, which outlive the request that started them.
	ctx    context.Context
	cancel context.CancelFunc
}

// New makes a Service; Close stops its validations.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	zone := cfg.Validator.cfg.Zone
	if zone == "" {
		zone = cfg.Node
	}
	return &Service{ca: cfg.CA, state: cfg.State, barrier: cfg.Barrier, nonces: cfg.Nonces, validator: cfg.Validator,
		peers: cfg.Peers, zone: zone, log: cfg.Logger.With("component", "acme"), now: cfg.Now, ctx: ctx, cancel: cancel}
}

// Close stops validations in progress; their challenges become retryable
// at their deadline.
func (s *Service) Close() { s.cancel() }

// Call is one ACME request: the provisioner its path names, the base URL
// of that provisioner's directory (https://host/acme/name), the URL it was
// sent to, path parameters and the body.
type Call struct {
	Provisioner *fsm.Provisioner
	Base        string
	URL         string
	ID, Type    string // path parameters
	Body        []byte
}

// Response is what an ACME request answers: a JSON body or a PEM chain,
// with the headers ACME defines.
type Response struct {
	Created  bool // a new account or order: 201
	Body     any
	PEM      []byte
	Location string
	Links    []Link
	// RetryAfter: the object is still changing; look again then.
	RetryAfter time.Duration
}

// Link is a Link header value.
type Link struct{ URL, Rel string }

// Provisioner finds the acme provisioner of a request.
func (s *Service) Provisioner(ctx context.Context, name string) (*fsm.Provisioner, error) {
	p, err := s.ca.ACMEProvisioner(ctx, name)
	if err != nil {
		if e := errs.Of(err); e != nil && (e.Kind == errs.Invalid || e.Kind == errs.NotFound) {
			return nil, problem(errs.NotFound, ProbMalformed, "no ACME directory named %s", truncate(name))
		}
		return nil, err
	}
	return p, nil
}

// Nonce mints a nonce for a reply.
func (s *Service) Nonce() string { return s.nonces.Make() }

// Directory is the provisioner's directory object.
func (s *Service) Directory(c *Call) *Response {
	meta := map[string]any{"externalAccountRequired": c.Provisioner.ACME != nil && c.Provisioner.ACME.RequireEAB}
	return &Response{Body: map[string]any{
		"newNonce":   c.Base + "/new-nonce",
		"newAccount": c.Base + "/new-account",
		"newOrder":   c.Base + "/new-order",
		"revokeCert": c.Base + "/revoke-cert",
		"keyChange":  c.Base + "/key-change",
		// RFC 9773: when to renew, so a fleet spreads its renewals and
		// replaces early after a revocation or an issuer rotation.
		"renewalInfo": c.Base + "/renewal-info",
		"meta":        meta,
	}}
}

// randomID is an unguessable id for an account, order, authorization or
// challenge token.
func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePayload reads a request's JSON payload strictly.
func decodePayload(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(v); err != nil {
		return malformed("the JWS payload is not the expected JSON object: %v", err)
	}
	if dec.More() {
		return malformed("unexpected data after the JWS payload")
	}
	return nil
}

// postAsGet: an empty payload (RFC 8555 section 6.3).
func postAsGet(sg *signed) bool { return len(sg.payload) == 0 }

// sync brings this node's state up to the leader's: a POST reads what was
// committed before it arrived, whichever node committed it.
func (s *Service) sync(ctx context.Context) error {
	return s.barrier.Barrier(ctx)
}

func (s *Service) actor(c *Call, acc *fsm.ACMEAccount) string {
	if acc == nil {
		return "acme:" + c.Provisioner.Name
	}
	return authority.ACMERequester(c.Provisioner.Name, acc.ID)
}

// notFound is a missing or foreign object: the two are not told apart.
func notFound(what, id string) *Problem {
	return problem(errs.NotFound, ProbMalformed, "no %s %s", what, truncate(id))
}

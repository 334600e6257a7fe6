package authority

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/quorumca/quorumca/fsm"
)

// Admin roles, from most to least powerful.
const (
	RoleAdmin    = "admin"    // everything
	RoleOperator = "operator" // day-to-day operations: tokens, revocations, cluster; no configuration
	RoleAuditor  = "auditor"  // read-only, audit log included
)

// Permission is what an admin endpoint needs.
type Permission int

const (
	PermRead      Permission = iota // any role
	PermOperate                     // operator and admin
	PermConfigure                   // admin: provisioners, authorities, admins
	// PermCreateAdmin is PermConfigure for creating an admin credential:
	// the one thing a recovery credential may do besides reading.
	PermCreateAdmin
)

var rolePerm = map[string]Permission{RoleAuditor: PermRead, RoleOperator: PermOperate, RoleAdmin: PermConfigure}

// Authorize checks that an admin's role grants a permission.
func Authorize(a *fsm.Admin, p Permission) error {
	if a.Recovery && p != PermRead && p != PermCreateAdmin {
		return fmt.Errorf("%w: a recovery credential may only create an admin", ErrForbidden)
	}
	need := min(p, PermConfigure)
	have, ok := rolePerm[a.Role]
	if !ok || have < need {
		return fmt.Errorf("%w: role %q may not do this", ErrForbidden, a.Role)
	}
	return nil
}

// AdminAuthority is the authority whose client certificates authenticate
// admins (mTLS), if the cluster has one.
const AdminAuthority = "admin"

// Actor names an admin in audit entries; a break-glass credential says so.
func Actor(a *fsm.Admin) string {
	if a.Recovery {
		return "recovery:" + a.Name + "/" + a.ID
	}
	return "admin:" + a.Name + "/" + a.ID
}

// Origin: who asks, and from where; carried by the context into the
// commands a request proposes, and from there into the audit log.
type originKey struct{}

// WithOrigin records the actor and remote address of a request.
func WithOrigin(ctx context.Context, actor, remote string) context.Context {
	return context.WithValue(ctx, originKey{}, fsm.Origin{Actor: actor, Remote: remote})
}

func originOf(ctx context.Context) fsm.Origin {
	o, _ := ctx.Value(originKey{}).(fsm.Origin)
	return o
}

// asActor returns ctx with the actor replaced, keeping the remote address.
func asActor(ctx context.Context, actor string) context.Context {
	return WithOrigin(ctx, actor, originOf(ctx).Remote)
}

// CreateAdmin stores a bootstrap admin credential and returns its token.
func (ca *CA) CreateAdmin(ctx context.Context, name, role string) (string, error) {
	m, err := ca.NewAdmin(ctx, AdminRequest{Name: name, Role: role})
	if err != nil {
		return "", err
	}
	return m.Token, nil
}

// AdminRequest creates an admin credential: a token, or, with a CSR, a
// client certificate from the admin authority.
type AdminRequest struct {
	Name string
	Role string
	TTL  time.Duration // 0: tokens never expire; certificates live 30 days
	CSR  []byte
	By   *fsm.Admin // who asks; a recovery credential is used up by the request
}

// MaxAdminName is the longest admin name, in characters. A certificate
// admin's name goes into its common name, "admin <name>", which RFC 5280
// bounds at 64 characters.
const MaxAdminName = 64

// checkAdminName: names reach terminals, logs and certificates, so they
// are printable text without control or formatting characters.
func checkAdminName(name string, cert bool) error {
	limit := MaxAdminName
	if cert {
		limit -= len("admin ")
	}
	n := utf8.RuneCountInString(name)
	ok := utf8.ValidString(name) && n > 0 && n <= limit && strings.TrimSpace(name) == name
	for _, r := range name {
		ok = ok && unicode.IsPrint(r) && r != utf8.RuneError // what JSON makes of invalid UTF-8
	}
	if !ok {
		return fmt.Errorf("%w: name: 1-%d printable characters, no control characters, no leading or trailing space", ErrInvalidRequest, limit)
	}
	return nil
}

// NewAdminCredential is a created credential, shown once.
type NewAdminCredential struct {
	Admin fsm.Admin
	Token string   // bearer token, for token admins
	Cert  []byte   // DER, for certificate admins
	Chain [][]byte // the admin authority's chain
}

// NewAdmin creates an admin credential.
func (ca *CA) NewAdmin(ctx context.Context, req AdminRequest) (*NewAdminCredential, error) {
	if _, ok := rolePerm[req.Role]; !ok {
		return nil, fmt.Errorf("%w: role: must be admin, operator or auditor", ErrInvalidRequest)
	}
	if err := checkAdminName(req.Name, len(req.CSR) > 0); err != nil {
		return nil, err
	}
	if req.TTL < 0 {
		return nil, fmt.Errorf("%w: ttl: must not be negative", ErrInvalidRequest)
	}
	out := &NewAdminCredential{Admin: fsm.Admin{ID: randomID(12), Name: req.Name, Role: req.Role}}
	if req.TTL > 0 {
		out.Admin.ExpiresAt = ca.now().Add(req.TTL).UTC()
	}
	cmd := fsm.AdminCreate{}
	if len(req.CSR) == 0 {
		out.Token = newSecret(adminPrefix)
		out.Admin.Hash, _ = parseSecret(adminPrefix, out.Token)
	} else {
		rec, chain, err := ca.signAdminCert(ctx, req)
		if err != nil {
			return nil, err
		}
		out.Admin.CertSerial, out.Admin.ExpiresAt = rec.Serial, rec.NotAfter
		out.Cert, out.Chain = rec.DER, chain
		cmd.Cert = rec
	}
	cmd.Admin = out.Admin
	if req.By != nil && req.By.Recovery {
		cmd.Consume = req.By.ID
	}
	if err := ca.proposeAndPropagate(ctx, fsm.CmdAdminCreate, cmd); err != nil {
		return nil, err
	}
	// The record as committed: created_at is the leader's time.
	rec, err := lookup(ctx, ca, func() (*fsm.Admin, error) {
		if out.Admin.CertSerial != "" {
			return ca.state.AdminByCert(out.Admin.CertSerial)
		}
		return ca.state.AdminByHash(out.Admin.Hash)
	})
	if err != nil {
		return nil, err
	}
	out.Admin = *rec
	return out, nil
}

// signAdminCert issues a client certificate for an admin from the admin
// authority; the admin keeps the key (only a CSR comes in).
func (ca *CA) signAdminCert(ctx context.Context, req AdminRequest) (*fsm.Cert, [][]byte, error) {
	a, err := ca.state.Authority(AdminAuthority)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: certificate admins need an authority named %q", ErrInvalidRequest, AdminAuthority)
	}
	csr, err := ParseCSR(req.CSR)
	if err != nil {
		return nil, nil, err
	}
	pol := DefaultPolicy()
	if err := checkKeyPolicy(&pol, csr.PublicKey); err != nil {
		return nil, nil, err
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = 30 * 24 * time.Hour
	}
	rec, chain, err := ca.signSpread(ctx, a, csr.PublicKey, &certNames{cn: "admin " + req.Name}, min(ttl, 365*24*time.Hour),
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	if err != nil {
		return nil, nil, err
	}
	rec.Requester = originOf(ctx).Actor
	return rec, chain, nil
}

// AuthenticateAdmin resolves a bearer token to an active admin.
func (ca *CA) AuthenticateAdmin(ctx context.Context, bearer string) (*fsm.Admin, error) {
	if bearer == "" {
		return nil, fmt.Errorf("%w: an admin bearer token or admin certificate is required", ErrUnauthenticated)
	}
	hash, ok := parseSecret(adminPrefix, bearer)
	if !ok {
		return nil, fmt.Errorf("%w: malformed admin token", ErrUnauthenticated)
	}
	// A credential is trusted only as committed when the request came: a
	// node that was paused or cut off must not honour one withdrawn since.
	if err := ca.CaughtUp(ctx); err != nil {
		return nil, err
	}
	return ca.activeAdmin(ca.state.AdminByHash(hash))
}

// AuthenticateAdminCert resolves a TLS client certificate to an active
// admin: it must be, byte for byte, a certificate of the admin authority
// issued to an admin, and not revoked.
func (ca *CA) AuthenticateAdminCert(ctx context.Context, cert *x509.Certificate) (*fsm.Admin, error) {
	serial := SerialHex(cert.SerialNumber)
	if err := ca.CaughtUp(ctx); err != nil { // as for a bearer token
		return nil, err
	}
	rec, err := ca.state.Cert(serial)
	if err != nil || !bytes.Equal(rec.DER, cert.Raw) || rec.Authority != AdminAuthority || rec.Revoked() {
		return nil, fmt.Errorf("%w: the client certificate is not an admin certificate", ErrUnauthenticated)
	}
	return ca.activeAdmin(ca.state.AdminByCert(serial))
}

func (ca *CA) activeAdmin(a *fsm.Admin, err error) (*fsm.Admin, error) {
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, fmt.Errorf("%w: unknown admin credential", ErrUnauthenticated)
	}
	if err != nil {
		return nil, err
	}
	if !a.Active(ca.now()) {
		return nil, fmt.Errorf("%w: admin credential revoked or expired", ErrUnauthenticated)
	}
	return a, nil
}

// Admins lists admin credentials (no secrets: only hashes are stored).
func (ca *CA) Admins(ctx context.Context) ([]*fsm.Admin, error) {
	if err := ca.raft.Barrier(ctx); err != nil {
		return nil, err
	}
	return ca.state.Admins()
}

// RevokeAdmin withdraws an admin credential on every node; a certificate
// admin's certificate is revoked with it, and is on its CRL within the CRL
// interval. The state machine refuses to withdraw the last usable admin.
func (ca *CA) RevokeAdmin(ctx context.Context, id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%w: admin id", ErrInvalidRequest)
	}
	as, err := ca.Admins(ctx)
	if err != nil {
		return err
	}
	var target *fsm.Admin
	for _, a := range as {
		if a.ID == id {
			target = a
		}
	}
	if target == nil {
		return refuse(fsm.ErrNotFoundAdmin, "no admin with id %s", id)
	}
	w := fsm.AdminWithdraw{ID: id, Reason: revocationReasons["privilegeWithdrawn"], By: originOf(ctx).Actor}
	// The same entry revokes a certificate admin's certificate and marks
	// its CRL stale: the leader re-signs it within the CRL interval.
	if err := ca.proposeAndRead(ctx, fsm.CmdAdminWithdraw, w); err != nil {
		return err
	}
	if _, _, err := ca.raft.Propagate(ctx); err != nil {
		ca.log.Warn("admin revocation not confirmed by every node", "admin", id, "err", err)
	}
	return nil
}

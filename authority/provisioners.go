package authority

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/quorumca/quorumca/fsm"
)

// PutProvisioner validates and stores a provisioner. expectedVersion is 0
// to create one, or the version the caller read to replace it.
func (ca *CA) PutProvisioner(ctx context.Context, p fsm.Provisioner, expectedVersion uint64) error {
	if err := ca.checkProvisioner(&p); err != nil {
		return err
	}
	if err := ca.checkKindChange(ctx, &p); err != nil {
		return err
	}
	return ca.proposeAndPropagate(ctx, fsm.CmdProvisionerPut, fsm.ProvisionerPut{Provisioner: p, ExpectedVersion: expectedVersion})
}

// DeleteProvisioner removes a provisioner; with outstanding tokens only if
// forced, which revokes them.
func (ca *CA) DeleteProvisioner(ctx context.Context, name string, force bool) error {
	return ca.proposeAndPropagate(ctx, fsm.CmdProvisionerDel, fsm.ProvisionerDelete{Name: name, Force: force})
}

// Provisioner returns one provisioner.
func (ca *CA) Provisioner(ctx context.Context, name string) (*fsm.Provisioner, error) {
	return ca.provisioner(ctx, name, "")
}

// Provisioners lists every provisioner.
func (ca *CA) Provisioners(ctx context.Context) ([]*fsm.Provisioner, error) {
	if err := ca.raft.Barrier(ctx); err != nil {
		return nil, err
	}
	return ca.state.Provisioners()
}

// checkProvisioner validates a provisioner document; messages name the
// field at fault.
func (ca *CA) checkProvisioner(p *fsm.Provisioner) error {
	if p.Name == "" || len(p.Name) > 64 || !validDNSName(p.Name) {
		return fmt.Errorf("%w: name: %q must be 1-64 lowercase letters, digits, '-' and '.'", ErrInvalidRequest, truncate(p.Name))
	}
	if _, err := ca.state.Authority(p.Authority); err != nil {
		return fmt.Errorf("%w: authority: no authority named %q", ErrInvalidRequest, truncate(p.Authority))
	}
	if p.Authority == AdminAuthority {
		// Admin identity is a trust domain of its own: its certificates
		// are made only for admin records, never through a provisioner.
		return fmt.Errorf("%w: authority: %q issues admin credentials only; no provisioner may use it", ErrInvalidRequest, AdminAuthority)
	}
	if err := CheckPolicy(&p.Policy); err != nil {
		return fmt.Errorf("%w: policy.%v", ErrInvalidRequest, err)
	}
	if p.Policy.ServerKeygen && p.Kind != fsm.KindEnrollmentToken {
		return fmt.Errorf("%w: policy.server_keygen: only an enrollment-token provisioner's EST clients may have the CA make their keys", ErrInvalidRequest)
	}
	if err := checkACMEOptions(p); err != nil {
		return err
	}
	if p.X5C != nil && p.Kind != fsm.KindX5C {
		return fmt.Errorf("%w: x5c: only an x5c provisioner has x5c options", ErrInvalidRequest)
	}
	switch p.Kind {
	case fsm.KindACME:
	case fsm.KindEnrollmentToken:
		if len(p.JWK) != 0 {
			return fmt.Errorf("%w: jwk: an enrollment-token provisioner has no jwk", ErrInvalidRequest)
		}
	case fsm.KindJWK:
		if _, err := parsePublicJWK(p.JWK); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidRequest, err)
		}
	case fsm.KindX5C:
		return ca.checkX5C(p)
	case fsm.KindServer:
		if len(p.JWK) != 0 {
			return fmt.Errorf("%w: jwk: a server provisioner has no jwk", ErrInvalidRequest)
		}
		return CheckServerPolicy(&p.Policy)
	default:
		return fmt.Errorf("%w: kind: must be %s, %s, %s, %s or %s", ErrInvalidRequest, fsm.KindEnrollmentToken, fsm.KindJWK, fsm.KindACME, fsm.KindX5C, fsm.KindServer)
	}
	return nil
}

// parsePublicJWK reads a JWK and insists it is a public signing key.
func parsePublicJWK(b json.RawMessage) (*jose.JSONWebKey, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("jwk: %v", err)
	}
	if !k.Valid() || !k.IsPublic() {
		return nil, errors.New("jwk: must be a valid public key")
	}
	if _, ok := jwtAlgorithm(k.Key); !ok {
		return nil, fmt.Errorf("jwk: key type %T cannot sign tokens", k.Key)
	}
	return &k, nil
}

// provisioner returns a provisioner of the wanted kind.
func (ca *CA) provisioner(ctx context.Context, name, kind string) (*fsm.Provisioner, error) {
	p, err := lookup(ctx, ca, func() (*fsm.Provisioner, error) { return ca.state.Provisioner(name) })
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, refuse(ErrProvisionerUnknown, "no provisioner named %q", name)
	}
	if err != nil {
		return nil, err
	}
	if kind != "" && p.Kind != kind {
		return nil, refuse(ErrProvisionerKind, "provisioner %s is a %s provisioner, not %s", name, p.Kind, kind)
	}
	return p, nil
}

// defaultTokenProvisioner is the enrollment-token provisioner used when a
// mint request names none: the one named "default", or the only one. Like
// any lookup, it reads locally, and once more after catching up with the
// leader when that finds none (a node that joined a moment ago).
func (ca *CA) defaultTokenProvisioner(ctx context.Context) (string, error) {
	name, err := ca.onlyTokenProvisioner()
	if !errors.Is(err, ErrInvalidRequest) {
		return name, err
	}
	if berr := ca.raft.Barrier(ctx); berr != nil {
		return "", berr
	}
	return ca.onlyTokenProvisioner()
}

func (ca *CA) onlyTokenProvisioner() (string, error) {
	ps, err := ca.state.Provisioners()
	if err != nil {
		return "", err
	}
	var names []string
	for _, p := range ps {
		if p.Kind == fsm.KindEnrollmentToken {
			if p.Name == "default" {
				return p.Name, nil
			}
			names = append(names, p.Name)
		}
	}
	if len(names) == 1 {
		return names[0], nil
	}
	return "", fmt.Errorf("%w: provisioner: name one of the enrollment-token provisioners %v", ErrInvalidRequest, names)
}

// EnsureDefaultProvisioner creates a "default" enrollment-token provisioner
// on the named authority when the cluster has no provisioner at all, so a
// new cluster can issue as soon as it has an authority.
func (ca *CA) EnsureDefaultProvisioner(ctx context.Context, authorityName string) error {
	if ps, err := ca.state.Provisioners(); err != nil || len(ps) > 0 {
		return err
	}
	err := ca.PutProvisioner(ctx, fsm.Provisioner{Name: "default", Kind: fsm.KindEnrollmentToken,
		Authority: authorityName, Policy: DefaultPolicy()}, 0)
	if errors.Is(err, fsm.ErrVersionMismatch) {
		return nil // created meanwhile by someone else
	}
	return err
}

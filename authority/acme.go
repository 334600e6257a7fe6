package authority

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// ACME's decisions: which identifiers a provisioner's policy allows in an
// order, and the one certificate of a ready order. The protocol itself
// (JWS, nonces, challenges, objects) is the acme package's; every state
// change it makes is committed through here, with its audit origin.

// ACME challenge types.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeDNS01     = "dns-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// ACMEChallenges is what an ACME provisioner offers when it names none.
var ACMEChallenges = []string{ChallengeHTTP01, ChallengeDNS01, ChallengeTLSALPN01}

// ACMERequester is the requester recorded on an ACME account's
// certificates: the account may revoke them.
func ACMERequester(provisioner, account string) string {
	return "acme:" + provisioner + "/" + account
}

// checkACMEOptions validates an acme provisioner's own settings.
func checkACMEOptions(p *fsm.Provisioner) error {
	if p.Kind != fsm.KindACME {
		if p.ACME != nil {
			return fmt.Errorf("%w: acme: only an acme provisioner has acme settings", ErrInvalidRequest)
		}
		return nil
	}
	if len(p.JWK) != 0 {
		return fmt.Errorf("%w: jwk: an acme provisioner has no jwk", ErrInvalidRequest)
	}
	if p.ACME == nil {
		return nil
	}
	for i, c := range p.ACME.Challenges {
		if !slices.Contains(ACMEChallenges, c) {
			return fmt.Errorf("%w: acme.challenges: %q is not one of %s", ErrInvalidRequest, truncate(c), strings.Join(ACMEChallenges, ", "))
		}
		if slices.Contains(p.ACME.Challenges[:i], c) {
			return fmt.Errorf("%w: acme.challenges: %s is named twice", ErrInvalidRequest, c)
		}
	}
	return nil
}

// ACMEProvisioner returns the acme provisioner named name.
func (ca *CA) ACMEProvisioner(ctx context.Context, name string) (*fsm.Provisioner, error) {
	return ca.provisioner(ctx, name, fsm.KindACME)
}

// ChallengesOf lists the challenge types an acme provisioner offers.
func ChallengesOf(p *fsm.Provisioner) []string {
	if p.ACME != nil && len(p.ACME.Challenges) > 0 {
		return p.ACME.Challenges
	}
	return ACMEChallenges
}

// CheckACMEIdentifiers applies the provisioner's name policy to an order's
// identifiers, before any authorization is made for them.
func (ca *CA) CheckACMEIdentifiers(prov *fsm.Provisioner, ids []fsm.ACMEIdentifier) error {
	n, err := identifierNames(ids)
	if err != nil {
		return err
	}
	if err := checkNames(&prov.Policy, n); err != nil {
		return err
	}
	return ca.checkReserved(prov, n)
}

// identifierNames turns an order's identifiers into certificate names.
func identifierNames(ids []fsm.ACMEIdentifier) (*certNames, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: an order names at least one identifier", ErrInvalidRequest)
	}
	n := &certNames{}
	for _, id := range ids {
		switch id.Type {
		case "dns":
			if net.ParseIP(id.Value) != nil {
				return nil, fmt.Errorf("%w: identifier %q: an address is of type ip", ErrInvalidRequest, truncate(id.Value))
			}
			if strings.TrimPrefix(id.Value, "*.") == "" || strings.Contains(strings.TrimPrefix(id.Value, "*."), "*") {
				return nil, fmt.Errorf("%w: identifier %q: a wildcard is \"*.\" and a name", ErrInvalidRequest, truncate(id.Value))
			}
		case "ip":
			if net.ParseIP(id.Value) == nil {
				return nil, fmt.Errorf("%w: identifier %q is not an IP address", ErrInvalidRequest, truncate(id.Value))
			}
		default:
			return nil, refuse(ErrACMEIdentifierType, "identifier type %q: dns and ip are supported", truncate(id.Type))
		}
		if err := n.add(id.Value); err != nil {
			return nil, fmt.Errorf("%w: identifier %q: %v", ErrInvalidRequest, truncate(id.Value), err)
		}
	}
	if len(n.all) > maxNames {
		return nil, fmt.Errorf("%w: at most %d identifiers", ErrInvalidRequest, maxNames)
	}
	return n, nil
}

// ProposeACME commits an ACME state change on behalf of actor (the
// account, or "acme:<provisioner>" before there is one).
func (ca *CA) ProposeACME(ctx context.Context, actor string, t fsm.CmdType, payload any) error {
	return ca.propose(asActor(ctx, actor), t, payload)
}

// FinalizeACME issues the one certificate of a ready order for a CSR (DER)
// that asks for exactly the order's identifiers, with a key other than
// the account's. An order finalized already (before, through another
// node, by a retry) answers with the certificate it got when that is for
// the CSR's key, else fsm.ErrACMEFinalized: the order never yields two.
func (ca *CA) FinalizeACME(ctx context.Context, prov *fsm.Provisioner, o *fsm.ACMEOrder, csrDER []byte, accountKey crypto.PublicKey) (*Issued, error) {
	csr, err := parseCSRDER(csrDER)
	if err != nil {
		return nil, err
	}
	if SamePublicKey(csr.PublicKey, accountKey) {
		// As Boulder: the account key signs requests, never a certificate.
		return nil, fmt.Errorf("%w: the CSR's key is the account's key", ErrBadCSR)
	}
	if o.Cert != "" {
		return ca.finalizedOrder(ctx, o.ID, csr.PublicKey, refuse(fsm.ErrACMEFinalized, "order %s is finalized already", o.ID))
	}
	names, err := csrNames(csr)
	if err != nil {
		return nil, err
	}
	want, err := identifierNames(o.Identifiers)
	if err != nil {
		return nil, err
	}
	for _, n := range names.all {
		if !slices.Contains(want.all, n) {
			return nil, refuse(ErrACMECSRNames, "the CSR names %s, which the order does not", n)
		}
	}
	for _, n := range want.all {
		if !slices.Contains(names.all, n) {
			return nil, refuse(ErrACMECSRNames, "the CSR lacks %s, which the order names", n)
		}
	}
	var ttl time.Duration
	if !o.NotAfter.IsZero() {
		ttl = o.NotAfter.Sub(ca.now()).Round(time.Second)
	}
	ctx = asActor(ctx, ACMERequester(prov.Name, o.Account))
	iss, err := ca.issue(ctx, issuance{
		prov: prov, pub: csr.PublicKey, names: names, ttl: ttl,
		requester: ACMERequester(prov.Name, o.Account),
		finalize:  &fsm.ACMEFinalize{Order: o.ID, Account: o.Account},
	})
	if errors.Is(err, fsm.ErrACMEFinalized) {
		return ca.finalizedOrder(ctx, o.ID, csr.PublicKey, err)
	}
	return iss, err
}

// finalizedOrder answers a finalize that lost to another with the
// certificate the order got, when the key is the same.
func (ca *CA) finalizedOrder(ctx context.Context, order string, pub crypto.PublicKey, lost error) (*Issued, error) {
	if err := ca.raft.Barrier(ctx); err != nil {
		return nil, err
	}
	o, _, err := ca.state.ACMEOrder(order)
	if err != nil || o.Cert == "" {
		return nil, lost
	}
	rec, err := ca.state.Cert(o.Cert)
	if err != nil {
		return nil, lost
	}
	leaf, err := x509.ParseCertificate(rec.DER)
	if err != nil || !SamePublicKey(pub, leaf.PublicKey) {
		return nil, lost
	}
	return &Issued{Cert: *rec, Chain: ca.Chain(rec)}, nil
}

// maxEABTTL bounds an EAB key's life: it is a secret held in the state,
// handed to a client to bind one account soon.
const maxEABTTL = 90 * 24 * time.Hour

// NewEABKey mints an external account binding key for an acme
// provisioner: its id and the HMAC key, shown once to the admin.
func (ca *CA) NewEABKey(ctx context.Context, by *fsm.Admin, provisioner, reference string, ttl time.Duration) (*fsm.ACMEEAB, error) {
	if err := Authorize(by, PermOperate); err != nil {
		return nil, err
	}
	if _, err := ca.ACMEProvisioner(ctx, provisioner); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = 7 * 24 * time.Hour
	}
	if ttl > maxEABTTL {
		return nil, fmt.Errorf("%w: ttl: an external account binding key lives at most %s", ErrInvalidRequest, maxEABTTL)
	}
	if len(reference) > 128 {
		return nil, fmt.Errorf("%w: reference: at most 128 characters", ErrInvalidRequest)
	}
	k := &fsm.ACMEEAB{ID: "eab_" + randomID(12), Provisioner: provisioner, Key: make([]byte, 32),
		Reference: reference, ExpiresAt: ca.now().Add(ttl).UTC().Truncate(time.Second)}
	rand.Read(k.Key)
	if err := ca.proposeAndRead(asActor(ctx, Actor(by)), fsm.CmdACMEEABPut, fsm.ACMEEABPut{Key: k}); err != nil {
		return nil, err
	}
	return k, nil
}

// RevokeEABKey withdraws an unused EAB key; an account it bound stays.
func (ca *CA) RevokeEABKey(ctx context.Context, by *fsm.Admin, id string) error {
	if err := Authorize(by, PermOperate); err != nil {
		return err
	}
	return ca.proposeAndRead(asActor(ctx, Actor(by)), fsm.CmdACMEEABPut, fsm.ACMEEABPut{Revoke: id})
}

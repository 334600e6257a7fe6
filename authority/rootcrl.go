package authority

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// Root CRLs. A relying party that checks the whole chain (nginx ssl_crl,
// HAProxy crl-file, openssl -crl_check_all) needs a CRL from the root that
// covers the intermediates. When the root's key is in a KMS or HSM
// (RootKeyURI) the leader signs one as it signs issuers' CRLs: on the
// authority's schedule, and within its CRL interval after an issuer is
// revoked. It lists the revoked issuers whose certificate the root signed.

// RootCRLID is the issuer ID a root's CRL is kept under.
func RootCRLID(root *x509.Certificate) string { return fsm.RootCRLPrefix + IssuerID(root) }

func (ca *CA) refreshRootCRL(ctx context.Context, name, id string, force bool) error {
	ca.crlMu.Lock()
	defer ca.crlMu.Unlock()
	a, err := ca.state.Authority(name)
	if err != nil {
		return err
	}
	root, err := ca.certs.parse(a.Root)
	if err != nil {
		return err
	}
	now := ca.now().UTC().Truncate(time.Second)
	if a.RootKeyURI == "" || RootCRLID(root) != id || !now.Before(root.NotAfter) {
		return nil // an offline root's CRL is signed where its key is
	}
	asOf := ca.state.AppliedIndex() // before the issuers are read, as refreshCRL
	number, due := ca.crlDue(a, id, force, now)
	if !due {
		return nil
	}
	err = ca.signCRL(ctx, fsm.CmdRootCRLPut, a, id, number, asOf, root, a.RootKeyURI, ca.revokedUnder(a, root, now), nil, now)
	if errors.Is(err, fsm.ErrUpgrading) {
		return nil // a server does not read root CRLs yet: a later round
	}
	return err
}

// revokedUnder lists the revoked, unexpired intermediates of a that root
// signed: what root's CRL must list.
func (ca *CA) revokedUnder(a *fsm.Authority, root *x509.Certificate, now time.Time) []x509.RevocationListEntry {
	var out []x509.RevocationListEntry
	for _, iss := range a.Issuers {
		if !iss.Revoked() {
			continue
		}
		top, err := ca.certs.parse(iss.Chain[len(iss.Chain)-1])
		if err != nil || top.CheckSignatureFrom(root) != nil || !now.Before(top.NotAfter) {
			continue // signed by another root, or expired: nothing to list
		}
		out = append(out, x509.RevocationListEntry{SerialNumber: top.SerialNumber, RevocationTime: iss.RevokedAt, ReasonCode: iss.RevocationReason})
	}
	return out
}

// RootCRL returns the current CRL of an authority's root (root is its
// IssuerID), never one past its nextUpdate.
func (ca *CA) RootCRL(ctx context.Context, name, root string) (*fsm.CRL, error) {
	if err := ca.CaughtUp(ctx); err != nil {
		return nil, err
	}
	a, err := ca.Authority(name)
	if err != nil {
		return nil, err
	}
	c, err := ca.state.CRL(name, fsm.RootCRLPrefix+root)
	switch {
	case errors.Is(err, fsm.ErrNotFound) && (a.RootKeyURI == "" || RootCRLID(mustParse(a.Root)) != fsm.RootCRLPrefix+root):
		return nil, fmt.Errorf("%w: authority %s publishes no CRL for root %q", ErrNotFound, name, truncate(root))
	case errors.Is(err, fsm.ErrNotFound) || (err == nil && !ca.now().Before(c.NextUpdate)):
		return nil, fmt.Errorf("%w: %w for %s/root %s; it is signed shortly", ErrUnavailable, ErrCRLUnavailable, name, root)
	}
	return c, err
}

// RootCert returns the DER of an authority's root with the given ID.
func (ca *CA) RootCert(name, root string) ([]byte, error) {
	a, err := ca.Authority(name)
	if err != nil {
		return nil, err
	}
	for _, der := range a.Roots() {
		if c, err := ca.certs.parse(der); err == nil && IssuerID(c) == root {
			return der, nil
		}
	}
	return nil, fmt.Errorf("%w: authority %s has no root %q", ErrNotFound, name, truncate(root))
}

// CRLBundle is every current CRL of an authority that a relying party
// checking whole chains needs: the root's (when this cluster signs it) and
// each unexpired issuer's. Unavailable if one of those lacks a current CRL.
func (ca *CA) CRLBundle(ctx context.Context, name string) ([]*fsm.CRL, error) {
	if err := ca.CaughtUp(ctx); err != nil {
		return nil, err
	}
	a, err := ca.Authority(name)
	if err != nil {
		return nil, err
	}
	now := ca.now()
	var ids []string
	for i, der := range a.Roots() {
		root := mustParse(der)
		if !now.Before(root.NotAfter) {
			continue
		}
		// A root whose key the cluster holds always has a CRL; an offline
		// one has one once imported (ImportRootCRL).
		_, err := ca.state.CRL(name, RootCRLID(root))
		if (i == 0 && a.RootKeyURI != "") || err == nil {
			ids = append(ids, RootCRLID(root))
		}
	}
	// A partitioned issuer's complete CRL goes along while it has one (it
	// may have outgrown one CRL): its shards cover what it issued since.
	optional := map[string]bool{}
	for _, iss := range a.Issuers {
		if c, err := ca.certs.parse(iss.Chain[0]); err == nil && now.Before(c.NotAfter) {
			ids = append(ids, crlIDs(&iss)...)
			optional[iss.ID] = iss.CRLShards > 1
		}
	}
	var out []*fsm.CRL
	for _, id := range ids {
		c, err := ca.state.CRL(name, id)
		if errors.Is(err, fsm.ErrNotFound) || (err == nil && !now.Before(c.NextUpdate)) {
			if optional[id] {
				continue
			}
			return nil, fmt.Errorf("%w: %w for %s/%s; it is signed shortly", ErrUnavailable, ErrCRLUnavailable, name, id)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// RevokeIssuer revokes an issuer's certificate: the issuer signs no new
// certificate, and the root's CRL lists it within the leader's CRL
// interval (when this cluster holds the root's key; an offline root's CRL
// is signed where the root is).
// reasonName is an RFC 5280 name ("" is unspecified). The authority's last
// active issuer is revoked only with force: the authority then issues
// nothing until an issuer is added.
func (ca *CA) RevokeIssuer(ctx context.Context, name, issuer, reasonName string, force bool) (*fsm.Authority, error) {
	if issuer == "" {
		return nil, fmt.Errorf("%w: name the issuer to revoke", ErrInvalidRequest)
	}
	reason, ok := revocationReasons[orDefault(reasonName, "unspecified")]
	if !ok {
		return nil, fmt.Errorf("%w: unknown revocation reason %q", ErrInvalidRequest, truncate(reasonName))
	}
	a, iss, err := ca.issuer(name, issuer)
	if err != nil {
		return nil, err
	}
	if act := a.ActiveIssuers(); !force && !iss.Revoked() && len(act) == 1 && act[0].ID == iss.ID {
		return nil, refuse(fsm.ErrConflict, "issuer %s is authority %s's last active issuer: add another first, or revoke with force (the authority then issues nothing)", iss.ID, name)
	}
	in := fsm.IssuerRevoke{Authority: name, Issuer: iss.ID, Reason: reason}
	// The root's CRL is marked whether or not the cluster holds its key
	// now: it is signed as soon as it does (RefreshStaleCRLs), and an
	// offline root's import clears the mark.
	for _, der := range a.Roots() {
		if root, top := mustParse(der), mustParse(iss.Chain[len(iss.Chain)-1]); top.CheckSignatureFrom(root) == nil {
			in.RootCRL = RootCRLID(root)
		}
	}
	if err := ca.proposeAndRead(ctx, fsm.CmdIssuerRevoke, in); err != nil {
		return nil, err
	}
	return ca.state.Authority(name)
}

// Offline roots. The cluster cannot sign their CRLs, so it says what to
// sign (RootCRLRequest: the next number and the revoked intermediates the
// root signed), the root's holder signs it where the key is
// (SignRootCRL, from `operator authority crl-sign`), and the cluster
// takes the result (ImportRootCRL) after checking it.

// RootCRLRequest is what an offline root's next CRL must say.
type RootCRLRequest struct {
	Authority string           `json:"authority"`
	Root      string           `json:"root_id"`
	RootPEM   string           `json:"root"`
	Number    uint64           `json:"number"`
	Revoked   []RootCRLRevoked `json:"revoked"`
}

// RootCRLRevoked is one revoked intermediate of a root CRL request.
type RootCRLRevoked struct {
	Serial    string    `json:"serial"` // hex
	RevokedAt time.Time `json:"revoked_at"`
	Reason    int       `json:"reason"`
}

// OfflineRootCRLRequest builds the request for an authority's root (its
// IssuerID; "" is the authority's first root).
func (ca *CA) OfflineRootCRLRequest(ctx context.Context, name, root string) (*RootCRLRequest, error) {
	if err := ca.CaughtUp(ctx); err != nil {
		return nil, err
	}
	a, err := ca.Authority(name)
	if err != nil {
		return nil, err
	}
	if root == "" {
		root = IssuerID(mustParse(a.Root))
	}
	der, err := ca.RootCert(name, root)
	if err != nil {
		return nil, err
	}
	now := ca.now()
	number, _ := ca.crlDue(a, fsm.RootCRLPrefix+root, true, now)
	req := &RootCRLRequest{Authority: name, Root: root, RootPEM: string(EncodePEM(der)), Number: number, Revoked: []RootCRLRevoked{}}
	for _, e := range ca.revokedUnder(a, mustParse(der), now) {
		req.Revoked = append(req.Revoked, RootCRLRevoked{Serial: SerialHex(e.SerialNumber), RevokedAt: e.RevocationTime, Reason: e.ReasonCode})
	}
	return req, nil
}

// SignRootCRL signs a root CRL request with the root's key, valid for
// validity: run where the offline root's key is, with no cluster.
func SignRootCRL(req *RootCRLRequest, rootKey crypto.Signer, validity time.Duration, now time.Time) ([]byte, error) {
	roots, err := ParseCertsPEM([]byte(req.RootPEM))
	if err != nil || len(roots) != 1 {
		return nil, fmt.Errorf("root crl request: no root certificate in it")
	}
	now = now.UTC().Truncate(time.Second)
	tmpl := &x509.RevocationList{Number: new(big.Int).SetUint64(req.Number), ThisUpdate: now, NextUpdate: now.Add(validity)}
	for _, r := range req.Revoked {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("root crl request: bad serial %q", r.Serial)
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: r.RevokedAt, ReasonCode: r.Reason})
	}
	return x509.CreateRevocationList(rand.Reader, tmpl, roots[0], rootKey)
}

// ImportRootCRL stores a CRL an authority's root signed elsewhere, after
// checking that one of the authority's roots signed it, that it is current
// and numbered above the stored one, and that it lists every revoked
// intermediate that root signed. It returns the root's ID.
func (ca *CA) ImportRootCRL(ctx context.Context, name string, der []byte) (string, error) {
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		return "", fmt.Errorf("%w: not a DER CRL: %v", ErrInvalidRequest, err)
	}
	if err := ca.CaughtUp(ctx); err != nil {
		return "", err
	}
	a, err := ca.Authority(name)
	if err != nil {
		return "", err
	}
	var root *x509.Certificate
	for _, r := range a.Roots() {
		if c := mustParse(r); l.CheckSignatureFrom(c) == nil {
			root = c
		}
	}
	now := ca.now()
	switch {
	case root == nil:
		return "", fmt.Errorf("%w: no root of authority %s signed this CRL", ErrInvalidRequest, name)
	case l.Number == nil || l.Number.Sign() <= 0 || !l.Number.IsUint64():
		return "", fmt.Errorf("%w: the CRL has no usable CRL number", ErrInvalidRequest)
	case !now.Before(l.NextUpdate) || l.ThisUpdate.After(now.Add(backdate)):
		return "", fmt.Errorf("%w: the CRL is not current (thisUpdate %s, nextUpdate %s)", ErrInvalidRequest, l.ThisUpdate.UTC().Format(time.RFC3339), l.NextUpdate.UTC().Format(time.RFC3339))
	}
	id := IssuerID(root)
	asOf := ca.state.AppliedIndex() // before the check that it lists what it must
	if a.RootKeyURI != "" && RootCRLID(mustParse(a.Root)) == fsm.RootCRLPrefix+id {
		return "", fmt.Errorf("%w: the cluster signs this root's CRLs itself (it holds the root's key)", ErrInvalidRequest)
	}
	for _, r := range ca.revokedUnder(a, root, now) {
		if !slices.ContainsFunc(l.RevokedCertificateEntries, func(e x509.RevocationListEntry) bool { return e.SerialNumber.Cmp(r.SerialNumber) == 0 }) {
			return "", fmt.Errorf("%w: the CRL does not list revoked intermediate %s: sign a new request", ErrInvalidRequest, SerialHex(r.SerialNumber))
		}
	}
	// A number not above the stored one is refused by the FSM (409).
	return id, ca.proposeAndRead(ctx, fsm.CmdRootCRLPut, fsm.CRLPut{CRL: fsm.CRL{Authority: name, Issuer: fsm.RootCRLPrefix + id,
		Number: l.Number.Uint64(), ThisUpdate: l.ThisUpdate, NextUpdate: l.NextUpdate, DER: der}, AsOf: asOf})
}

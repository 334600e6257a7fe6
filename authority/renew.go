package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// RenewRequest renews the certificate that authenticates it.
type RenewRequest struct {
	// PeerCert is the client certificate of the TLS handshake; the handshake
	// proved the client holds its key.
	PeerCert *x509.Certificate
	// Bearer is a renewal token, for clients behind a proxy that ends TLS:
	// a JWT signed with the certificate's key, the certificate in x5c.
	Bearer string
	// CSR, if set, rotates the key: its names must be the certificate's.
	CSR       []byte
	Audiences []string // for Bearer: the configured public URLs + /v1/renew
	// Provisioner, if set, must be the certificate's (EST's per-provisioner
	// path).
	Provisioner string
	// IssuedOnly refuses admin certificates: EST renews devices' and
	// services' identities, never an admin's.
	IssuedOnly bool
}

// ErrRenewalUnauthenticated: no certificate was presented.
var ErrRenewalUnauthenticated = errs.New(errs.Unauthenticated, "renewal_unauthenticated",
	"renewal needs the current certificate in the TLS handshake, or a renewal token")

// Renew issues a new certificate with exactly the identity of the current
// one: same subject, names, provisioner and authority. It is refused when
// the current certificate is revoked, expired beyond the provisioner's grace
// window, or not a certificate this cluster issued.
//
// A certificate renews once. Asked again, with the key its successor has
// (the same certificate key without a CSR, or the CSR's), the answer is the
// successor, as the first renewal returned it: a device whose answer was
// lost asks again and gets it. With another key the answer is
// certificate_renewed: whoever holds a replaced certificate cannot renew it
// any more, so rotating the key evicts them. Renewals are limited per
// lineage.
func (ca *CA) Renew(ctx context.Context, req RenewRequest) (*Issued, error) {
	leaf := req.PeerCert
	var auth fsm.Issue
	if req.Bearer != "" {
		v, cert, err := ca.verifyRenewalJWS(req.Bearer, req.Audiences)
		if err != nil {
			return nil, err
		}
		leaf, auth.OneTime = cert, v.oneTime
	}
	if leaf == nil {
		return nil, ErrRenewalUnauthenticated
	}
	rec, err := ca.issuedRecord(ctx, leaf)
	if err != nil {
		return nil, err
	}
	if rec.Authority == AdminAuthority && rec.Provisioner == "" {
		if req.IssuedOnly {
			return nil, fmt.Errorf("%w: admin certificates renew at /v1/renew only", ErrForbidden)
		}
		// An admin certificate: no provisioner, and the admin record must
		// follow it. Renewal tokens carry a one-time ID that admin_renew
		// does not record, so only the TLS handshake may ask.
		if rec.Revoked() {
			return nil, refuse(fsm.ErrCertRevoked, "certificate %s has been revoked", rec.Serial)
		}
		if req.Bearer != "" {
			return nil, fmt.Errorf("%w: admin certificates renew over mTLS only", ErrForbidden)
		}
		if err := limitLineage(ca.renewals, rec, "renewals"); err != nil {
			return nil, err
		}
		return ca.renewAdmin(ctx, rec, leaf, req.CSR)
	}
	if req.Provisioner != "" && req.Provisioner != rec.Provisioner {
		return nil, fmt.Errorf("%w: certificate %s is of provisioner %s, not %s", ErrForbidden, rec.Serial, rec.Provisioner, truncate(req.Provisioner))
	}
	names, err := certNamesOf(leaf)
	if err != nil {
		return nil, err
	}
	pub := leaf.PublicKey
	if len(req.CSR) > 0 {
		csr, want, err := parseCSRNames(req.CSR)
		if err != nil {
			return nil, err
		}
		if want.cn != names.cn || len(want.all) != len(names.all) || !containsAll(names.all, want.all) {
			return nil, refuse(fsm.ErrNameNotAllowed, "a renewal must keep the names of certificate %s", rec.Serial)
		}
		pub = csr.PublicKey
	}
	if rec.RenewedBy != "" {
		return ca.successor(ctx, rec.Serial, pub)
	}
	if rec.Revoked() {
		return nil, refuse(fsm.ErrCertRevoked, "certificate %s has been revoked", rec.Serial)
	}
	prov, err := ca.provisioner(ctx, rec.Provisioner, "")
	if err != nil {
		return nil, err
	}
	if err := refuseServerRenewal(prov, rec); err != nil {
		return nil, err
	}
	if ca.now().After(rec.NotAfter.Add(prov.Policy.RenewGrace)) {
		return nil, refuse(fsm.ErrCertExpired, "certificate %s expired beyond the renewal grace window (%s)", rec.Serial, prov.Policy.RenewGrace)
	}
	// Counted only now: a certificate that is revoked, replaced or expired
	// (a thief's old one, say) renews nothing, and must not spend the
	// budget of the lineage's current certificate either.
	if err := limitLineage(ca.renewals, rec, "renewals"); err != nil {
		return nil, err
	}
	// The same lifetime again, within what the provisioner allows now.
	ttl := min(rec.NotAfter.Sub(rec.NotBefore)-backdate, maxTTL(&prov.Policy))
	auth.Renews = rec.Serial
	ctx = asActor(ctx, "cert:"+rec.Serial)
	iss, err := ca.issue(ctx, issuance{
		prov: prov, authority: rec.Authority, pub: pub, names: names, ttl: max(ttl, minCertTTL),
		requester: "renewal:" + rec.Serial, auth: auth, revokeRenewed: prov.Policy.RevokeOnRenew,
	})
	if errors.Is(err, fsm.ErrCertRenewed) {
		// Renewed a moment ago, through this node or another (perhaps by
		// this very request sent twice): what it got is the answer.
		return ca.successor(ctx, rec.Serial, pub)
	}
	return iss, err
}

// successor answers a renewal of a certificate that has been renewed: its
// successor if that certifies pub, the key the request asks for.
func (ca *CA) successor(ctx context.Context, serial string, pub crypto.PublicKey) (*Issued, error) {
	old, err := ca.state.Cert(serial)
	if err == nil && old.RenewedBy == "" {
		// The leader refused it as renewed; this node has not applied
		// that renewal yet.
		if err := ca.raft.Barrier(ctx); err != nil {
			return nil, err
		}
		old, err = ca.state.Cert(serial)
	}
	if err != nil {
		return nil, err
	}
	if old.RenewedBy == "" {
		return nil, fmt.Errorf("certificate %s was refused as renewed but names no successor", serial)
	}
	next, err := ca.state.Cert(old.RenewedBy)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(next.DER)
	if err != nil {
		return nil, err
	}
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
		return nil, refuse(fsm.ErrCertRenewed, "certificate %s has already been renewed (as %s) for another key; renew that certificate instead", serial, next.Serial)
	}
	// Revoked since by someone (not by its own renewal): like any revoked
	// certificate, it is renewed no more, not even as a retry.
	if old.Revoked() && old.RevokedBy != "renewal:"+next.Serial {
		return nil, refuse(fsm.ErrCertRevoked, "certificate %s has been revoked", serial)
	}
	if next.Revoked() {
		return nil, refuse(fsm.ErrCertRevoked, "certificate %s has been renewed as %s, which has been revoked", serial, next.Serial)
	}
	return &Issued{Cert: *next, Chain: ca.Chain(next)}, nil
}

// issuedRecord finds the record of a certificate a client presented and
// checks it is byte for byte one this cluster issued.
func (ca *CA) issuedRecord(ctx context.Context, leaf *x509.Certificate) (*fsm.Cert, error) {
	serial := SerialHex(leaf.SerialNumber)
	rec, err := lookup(ctx, ca, func() (*fsm.Cert, error) { return ca.state.Cert(serial) })
	if errors.Is(err, fsm.ErrNotFound) || (err == nil && !bytes.Equal(rec.DER, leaf.Raw)) {
		return nil, refuse(fsm.ErrCertUnknown, "certificate %s was not issued by this CA", serial)
	}
	if err != nil {
		return nil, err
	}
	if _, err := ca.state.Authority(rec.Authority); err != nil {
		return nil, refuse(fsm.ErrCertUnknown, "certificate %s is from unknown authority %s", serial, rec.Authority)
	}
	return rec, nil
}

func containsAll(set, xs []string) bool {
	for _, x := range xs {
		if !slices.Contains(set, x) {
			return false
		}
	}
	return true
}

package authority

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/signer"
)

// Issued is a certificate that has been committed, with its chain.
type Issued struct {
	Cert  fsm.Cert
	Chain [][]byte // DER, issuing certificate first, root excluded
}

// issuance is one certificate to make: what the provisioner must allow,
// and what authorized it.
type issuance struct {
	prov      *fsm.Provisioner
	authority string // "": the provisioner's; renewals keep the old one
	pub       crypto.PublicKey
	names     *certNames
	ttl       time.Duration // requested; 0 for the provisioner's default
	requester string
	auth      fsm.Issue // TokenHash, OneTime and/or Renews; Cert is filled in
	// revokeRenewed: a renewal revokes the certificate it renews
	// (the provisioner's revoke_on_renew).
	revokeRenewed bool
	// finalize: an ACME order's certificate, committed with the order
	// (auth unused).
	finalize *fsm.ACMEFinalize
}

// issue applies the provisioner's policy, signs, and commits the record
// together with its authorization. The certificate is returned only after
// the commit; if the commit is refused (the token was used a moment ago
// through another node, the certificate being renewed was just revoked),
// the signed certificate is discarded.
func (ca *CA) issue(ctx context.Context, req issuance) (*Issued, error) {
	pol := &req.prov.Policy
	if err := checkKeyPolicy(pol, req.pub); err != nil {
		return nil, err
	}
	if err := checkNames(pol, req.names); err != nil {
		return nil, err
	}
	if err := ca.checkReserved(req.prov, req.names); err != nil {
		return nil, err
	}
	ttl, err := lifetime(pol, req.ttl)
	if err != nil {
		return nil, err
	}
	name := req.authority
	if name == "" {
		name = req.prov.Authority
	}
	a, err := ca.state.Authority(name)
	if err != nil {
		return nil, fmt.Errorf("%w: authority %s is unknown", ErrUnavailable, name)
	}
	rec, chain, err := ca.signSpread(ctx, a, req.pub, req.names, ttl, extKeyUsage(pol))
	if err != nil {
		return nil, err
	}
	rec.Provisioner, rec.Requester = req.prov.Name, req.requester
	req.auth.Cert = *rec
	if err := ca.commit(ctx, &req); err != nil {
		return nil, err
	}
	if req.auth.Renews != "" {
		rec.RenewedFrom = req.auth.Renews
	}
	return &Issued{Cert: *rec, Chain: chain}, nil
}

// commit proposes the signed certificate with its authorization. A
// renewal goes as CmdRenew, where the FSM lets each certificate renew once;
// while a server of an older release is in the cluster, as CmdIssue, which
// every release applies alike (renewals are then not limited to one).
func (ca *CA) commit(ctx context.Context, req *issuance) error {
	if f := req.finalize; f != nil {
		f.Cert = req.auth.Cert
		return ca.propose(ctx, fsm.CmdACMEFinalize, *f)
	}
	if req.auth.Renews == "" {
		return ca.propose(ctx, fsm.CmdIssue, req.auth)
	}
	err := ca.proposeUpgraded(ctx, fsm.CmdRenew, fsm.Renew{Renews: req.auth.Renews, OneTime: req.auth.OneTime,
		RevokeRenewed: req.revokeRenewed, Cert: req.auth.Cert})
	if errors.Is(err, fsm.ErrUpgrading) {
		return ca.propose(ctx, fsm.CmdIssue, req.auth)
	}
	return err
}

// signSpread signs with one of the authority's active issuers, taking them
// in turn so several KMS keys share the load; an issuer whose signer is
// overloaded or down passes the request to the next.
func (ca *CA) signSpread(ctx context.Context, a *fsm.Authority, pub crypto.PublicKey, names *certNames, ttl time.Duration, eku []x509.ExtKeyUsage) (*fsm.Cert, [][]byte, error) {
	active := a.ActiveIssuers()
	if len(active) == 0 {
		return nil, nil, fmt.Errorf("%w: authority %s has no active issuer", ErrUnavailable, a.Name)
	}
	start := int(ca.turn.Add(1))
	var err error
	for i := range active {
		iss := active[(start+i)%len(active)]
		var rec *fsm.Cert
		rec, err = ca.sign(ctx, a, iss, pub, names, ttl, eku)
		if err == nil {
			return rec, iss.Chain, nil
		}
		if !errors.Is(err, signer.ErrOverloaded) && !errors.Is(err, signer.ErrUnavailable) {
			break
		}
	}
	return nil, nil, err
}

// sign makes the certificate. Everything non-deterministic happens here, on
// the node that received the request: serial, validity, signature.
func (ca *CA) sign(ctx context.Context, a *fsm.Authority, iss *fsm.Issuer, pub crypto.PublicKey, names *certNames, ttl time.Duration, eku []x509.ExtKeyUsage) (*fsm.Cert, error) {
	issuer, err := ca.certs.parse(iss.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("authority %s issuer %s: %w", a.Name, iss.ID, err)
	}
	key, err := ca.signers.Get(ctx, iss.KeyURI)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// Whole seconds: the record's times then equal the certificate's.
	now := ca.now().UTC().Truncate(time.Second)
	tmpl, err := baseTemplate(pub, ttl, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	tmpl.Subject = pkix.Name{CommonName: names.cn}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	tmpl.ExtKeyUsage = eku
	tmpl.DNSNames, tmpl.IPAddresses, tmpl.URIs, tmpl.EmailAddresses = names.dns, names.ips, names.uris, names.emails
	if u := a.BaseURL; u != "" {
		tmpl.OCSPServer = []string{OCSPURL(u)}
		tmpl.IssuingCertificateURL = []string{IssuerURL(u, a.Name, iss.ID)}
		tmpl.CRLDistributionPoints = []string{CRLURL(u, a.Name, iss.ID)}
	}
	if n := iss.CRLShards; n > 1 {
		tmpl.CRLDistributionPoints = []string{CRLShardURL(iss.CRLBaseURL, a.Name, iss.ID, fsm.CRLShard(SerialHex(tmpl.SerialNumber), n))}
	}
	if tmpl.NotAfter.After(issuer.NotAfter) {
		tmpl.NotAfter = issuer.NotAfter
	}
	if !tmpl.NotAfter.After(now) {
		return nil, fmt.Errorf("%w: authority %s has expired", ErrUnavailable, a.Name)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, signer.CryptoSigner(ctx, key))
	if err != nil {
		return nil, signError(err)
	}
	return &fsm.Cert{
		Serial:    SerialHex(tmpl.SerialNumber),
		Authority: a.Name,
		Issuer:    iss.ID,
		Subject:   tmpl.Subject.String(),
		SANs:      names.all,
		NotBefore: tmpl.NotBefore,
		NotAfter:  tmpl.NotAfter,
		DER:       der,
	}, nil
}

// URLs that issued certificates name, under an authority's base URL.
func OCSPURL(base string) string { return strings.TrimSuffix(base, "/") + "/v1/ocsp" }

func CRLURL(base, authority, issuer string) string {
	return issuerPath(base, authority, issuer) + "/crl"
}

// CRLShardURL serves shard k of an issuer's partitioned CRL.
func CRLShardURL(base, authority, issuer string, k int) string {
	return CRLURL(base, authority, issuer) + "/" + strconv.Itoa(k)
}

func IssuerURL(base, authority, issuer string) string {
	return issuerPath(base, authority, issuer) + "/issuer.crt"
}

// RootCRLURL and RootCertURL serve a root's CRL and certificate; root is
// the root's IssuerID.
func RootCRLURL(base, authority, root string) string { return rootPath(base, authority, root) + "/crl" }

func RootCertURL(base, authority, root string) string {
	return rootPath(base, authority, root) + "/root.crt"
}

func rootPath(base, authority, root string) string {
	return strings.TrimSuffix(base, "/") + "/v1/authorities/" + authority + "/roots/" + root
}

func issuerPath(base, authority, issuer string) string {
	return strings.TrimSuffix(base, "/") + "/v1/authorities/" + authority + "/issuers/" + issuer
}

// signError keeps a signer's overload and unavailability recognizable
// through the standard library's wrapping, so the API can answer 429/503.
func signError(err error) error {
	switch {
	case errors.Is(err, signer.ErrOverloaded), errors.Is(err, signer.ErrUnavailable):
		return err
	}
	return fmt.Errorf("sign: %w", err)
}

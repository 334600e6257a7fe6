package api

import (
	"context"
	"crypto"
	"crypto/x509"
	"io"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
)

// What the handlers need of the certificate authority and of the cluster,
// defined here (the consumer owns the interface): a node passes its
// *authority.CA and *cluster.Cluster, tests fakes, so handlers and the
// mapping of errors to statuses are tested without a cluster.

// Certificates issues, renews and revokes certificates and finds them.
type Certificates interface {
	Sign(ctx context.Context, req authority.SignRequest) (*authority.Issued, error)
	// SignServerKey is Sign where the CA makes the key (EST serverkeygen).
	SignServerKey(ctx context.Context, req authority.SignRequest) (*authority.Issued, crypto.Signer, error)
	// SignX5C issues a device's certificate against its factory
	// certificate (an x5c provisioner).
	SignX5C(ctx context.Context, req authority.X5CRequest) (*authority.Issued, error)
	Renew(ctx context.Context, req authority.RenewRequest) (*authority.Issued, error)
	Revoke(ctx context.Context, req authority.RevokeRequest) (*authority.Revoked, error)
	Cert(ctx context.Context, serial string) (*fsm.Cert, error)
	SearchCerts(ctx context.Context, q fsm.CertQuery) ([]*fsm.Cert, []byte, error)
	// Chain is the chain of c's issuer, for answers that show c.
	Chain(c *fsm.Cert) [][]byte
	// RenewalInfo is when the certificate's holder should renew (RFC 9773).
	RenewalInfo(ctx context.Context, serial string) (*authority.RenewalWindow, *fsm.Cert, error)
}

// Publisher serves what relying parties fetch without credentials: roots,
// issuing certificates, CRLs and OCSP answers.
type Publisher interface {
	Roots(ctx context.Context) ([][]byte, error)
	AuthorityRoots(ctx context.Context, name string) ([][]byte, error)
	IssuerCert(ctx context.Context, name, issuer string) ([]byte, error)
	// CACerts is an authority's current chain and roots, for EST.
	CACerts(ctx context.Context, name string) ([][]byte, error)
	RootCert(name, root string) ([]byte, error)
	// CRL is an issuer's complete CRL (shard -1) or one of its shards.
	CRL(ctx context.Context, name, issuer string, shard int) (*fsm.CRL, error)
	// CRLOf is the current CRL that lists a certificate (SCEP's GetCRL).
	CRLOf(ctx context.Context, c *fsm.Cert) (*fsm.CRL, error)
	// SCEP is an authority's SCEP RA, its key bound to ctx.
	SCEP(ctx context.Context, name string) (*authority.SCEPRA, error)
	RootCRL(ctx context.Context, name, root string) (*fsm.CRL, error)
	CRLBundle(ctx context.Context, name string) ([]*fsm.CRL, error)
	// OCSP answers a DER request with a DER response and the status of
	// each certificate a signed response reports.
	OCSP(ctx context.Context, reqDER []byte) ([]byte, []string, error)
}

// AdminCredentials authenticates admins and manages their credentials.
type AdminCredentials interface {
	AuthenticateAdmin(ctx context.Context, bearer string) (*fsm.Admin, error)
	AuthenticateAdminCert(ctx context.Context, cert *x509.Certificate) (*fsm.Admin, error)
	Admins(ctx context.Context) ([]*fsm.Admin, error)
	NewAdmin(ctx context.Context, req authority.AdminRequest) (*authority.NewAdminCredential, error)
	RevokeAdmin(ctx context.Context, id string) error
}

// Tokens mints, lists and withdraws enrollment tokens.
type Tokens interface {
	MintTokens(ctx context.Context, admin *fsm.Admin, req authority.TokenRequest) ([]authority.MintedToken, error)
	OutstandingTokens(ctx context.Context, provisioner string, cursor []byte, limit int) ([]*fsm.Token, []byte, error)
	RevokeToken(ctx context.Context, id string) error
	// External account binding keys of ACME provisioners.
	NewEABKey(ctx context.Context, by *fsm.Admin, provisioner, reference string, ttl time.Duration) (*fsm.ACMEEAB, error)
	RevokeEABKey(ctx context.Context, by *fsm.Admin, id string) error
}

// Provisioners manages provisioners.
type Provisioners interface {
	Provisioner(ctx context.Context, name string) (*fsm.Provisioner, error)
	Provisioners(ctx context.Context) ([]*fsm.Provisioner, error)
	// PutProvisioner creates (version 0) or replaces the version read.
	PutProvisioner(ctx context.Context, p fsm.Provisioner, expectedVersion uint64) error
	DeleteProvisioner(ctx context.Context, name string, force bool) error
	// The devices of an x5c provisioner: its allow-list and enrollments.
	PutDevices(ctx context.Context, prov string, ids []string) (int, error)
	RevokeDevice(ctx context.Context, prov, id string) (*fsm.Device, error)
	Device(ctx context.Context, prov, id string) (*fsm.Device, error)
	Devices(ctx context.Context, prov, prefix, after string, limit int) ([]*fsm.Device, error)
}

// Authorities manages authorities: their issuers, settings, offline
// roots' CRLs and delegated OCSP responders.
type Authorities interface {
	Authorities() ([]*fsm.Authority, error)
	Authority(name string) (*fsm.Authority, error)
	CreateAuthority(ctx context.Context, req authority.CreateAuthorityRequest) (*fsm.Authority, error)
	ImportIssuer(ctx context.Context, req authority.ImportRequest) (*fsm.Authority, error)
	// EnsureDefaultProvisioner gives a new cluster a provisioner to issue
	// from the authority it just made.
	EnsureDefaultProvisioner(ctx context.Context, authorityName string) error
	IntermediateCSR(ctx context.Context, k authority.KeySpec, commonName string) ([]byte, string, error)
	RotateIssuer(ctx context.Context, req authority.RotateRequest) (*fsm.Authority, error)
	UpdateAuthority(ctx context.Context, req authority.UpdateRequest) (*fsm.Authority, error)
	RevokeIssuer(ctx context.Context, name, issuer, reasonName string, force bool) (*fsm.Authority, error)
	OfflineRootCRLRequest(ctx context.Context, name, root string) (*authority.RootCRLRequest, error)
	ImportRootCRL(ctx context.Context, name string, der []byte) (string, error)
	Delegate(role, name string) (*fsm.OCSPResponder, error)
	SetDelegate(ctx context.Context, role string, req authority.DelegateRequest) (*fsm.OCSPResponder, error)
	DeleteDelegate(ctx context.Context, role, name string) error
}

// AuditLog reads the audit log, and waits for the state to change for
// those who follow it.
type AuditLog interface {
	Audit(ctx context.Context, q fsm.AuditFilter) (fsm.AuditPage, error)
	AuditHead() (uint64, string)
	AppliedIndex() uint64
	WaitForChange(ctx context.Context, since uint64) error
}

// Readiness says whether this node can serve: caught up with the leader,
// its signer working.
type Readiness interface {
	CaughtUp(ctx context.Context) error
	Health(ctx context.Context) error
}

// CA is everything the handlers need of the certificate authority.
type CA interface {
	Certificates
	Publisher
	AdminCredentials
	Tokens
	Provisioners
	Authorities
	AuditLog
	Readiness
}

// Cluster is what the API needs to know about the node's membership.
type Cluster interface {
	Status() cluster.Status
}

// Operator is what the operator endpoints need of the cluster: peers,
// removal, leadership transfer, snapshot save and restore.
type Operator interface {
	Peers() ([]cluster.Peer, error)
	RemovePeer(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error
	WriteSnapshot(ctx context.Context, w io.Writer) error
	RestoreSnapshot(ctx context.Context, r io.Reader) error
}

var (
	_ CA       = (*authority.CA)(nil)
	_ Cluster  = (*cluster.Cluster)(nil)
	_ Operator = (*cluster.Cluster)(nil)
)

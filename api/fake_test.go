package api

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"github.com/quorumca/quorumca/internal/testwait"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
)

// Fakes of what the handlers need: canned answers, the arguments they were
// called with, and an error to answer instead when a test sets one.

// Bearer tokens the fake knows, one per role.
const (
	tokAdmin    = "qcat_admin"
	tokOperator = "qcat_operator"
	tokAuditor  = "qcat_auditor"
	tokRecovery = "qcat_recovery"
)

var fakeAdmins = map[string]*fsm.Admin{
	tokAdmin:    {ID: "a1", Name: "alice", Role: authority.RoleAdmin},
	tokOperator: {ID: "o1", Name: "oscar", Role: authority.RoleOperator},
	tokAuditor:  {ID: "u1", Name: "ursula", Role: authority.RoleAuditor},
	tokRecovery: {ID: "r1", Name: "recovery", Role: authority.RoleAdmin, Recovery: true},
}

// testPKI is a self-signed CA certificate and its key, made once.
var testPKI = sync.OnceValues(func() (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c, key
})

func rootDER() []byte { c, _ := testPKI(); return c.Raw }

type fakeCA struct {
	mu sync.Mutex
	// fail, if set, is every method's answer but authentication's; errs
	// sets one method's (authentication's too).
	fail  error
	errs  map[string]error
	calls []string

	// Answers.
	ocspResp     []byte
	ocspStatuses []string
	crls         []*fsm.CRL
	audit        []fsm.AuditEntry
	applied      uint64
	changed      chan struct{} // nil: WaitForChange waits for its context; else notify wakes it

	// Arguments of the last calls.
	sign     authority.SignRequest
	renew    authority.RenewRequest
	revoke   authority.RevokeRequest
	crlArgs  []any
	tokenReq authority.TokenRequest
	putProv  fsm.Provisioner
	putVer   uint64
	update   authority.UpdateRequest
	filter   fsm.AuditFilter
	query    fsm.CertQuery
	ocspReq  []byte
}

func newFakeCA() *fakeCA { return &fakeCA{errs: map[string]error{}} }

// call records a call and returns the error it should answer.
func (f *fakeCA) call(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	if err := f.errs[name]; err != nil {
		return err
	}
	return f.fail
}

func (f *fakeCA) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *fakeCA) called(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c == name {
			return true
		}
	}
	return false
}

func fakeCert(serial string) *fsm.Cert {
	now := time.Now().UTC().Truncate(time.Second)
	return &fsm.Cert{Serial: serial, Subject: "CN=device.example", SANs: []string{"device.example"}, DER: []byte("der-" + serial),
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), Authority: "default", IssuedAt: now.Add(-time.Hour),
		Provisioner: "default", Requester: "token:t1"}
}

func fakeAuthority(name string) *fsm.Authority {
	return &fsm.Authority{Name: name, Root: rootDER(), CreatedAt: time.Now().UTC(),
		Issuers: []fsm.Issuer{{ID: "i1", KeyURI: "softkey:/k", Active: true, Chain: [][]byte{rootDER()}}}}
}

func fakeProvisioner(name string) *fsm.Provisioner {
	return &fsm.Provisioner{Name: name, Kind: fsm.KindEnrollmentToken, Authority: "default", Version: 3,
		Policy: fsm.Policy{DNS: []string{"*.example"}, DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour}}
}

func fakeResponder(name string) *fsm.OCSPResponder {
	return &fsm.OCSPResponder{Authority: name, KeyURI: "softkey:/ocsp", TTL: 7 * 24 * time.Hour, Version: 1,
		Certs: []fsm.OCSPResponderCert{{Issuer: "i1", DER: rootDER(), NotAfter: time.Now().Add(time.Hour)}}}
}

func fakeCRL(issuer string, number uint64) *fsm.CRL {
	now := time.Now().UTC().Truncate(time.Second)
	return &fsm.CRL{Authority: "default", Issuer: issuer, Number: number, DER: []byte("crl-" + issuer),
		ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}
}

// Certificates

func (f *fakeCA) Sign(_ context.Context, req authority.SignRequest) (*authority.Issued, error) {
	f.sign = req
	if err := f.call("Sign"); err != nil {
		return nil, err
	}
	return &authority.Issued{Cert: *fakeCert("0a"), Chain: [][]byte{rootDER()}}, nil
}

// SignServerKey: no key from the fake; node tests make real ones.
func (f *fakeCA) SignX5C(context.Context, authority.X5CRequest) (*authority.Issued, error) {
	return nil, f.call("SignX5C")
}

func (f *fakeCA) SignServerKey(_ context.Context, req authority.SignRequest) (*authority.Issued, crypto.Signer, error) {
	f.sign = req
	return nil, nil, f.call("SignServerKey")
}

func (f *fakeCA) Renew(_ context.Context, req authority.RenewRequest) (*authority.Issued, error) {
	f.renew = req
	if err := f.call("Renew"); err != nil {
		return nil, err
	}
	c := fakeCert("0b")
	c.RenewedFrom = "0a"
	return &authority.Issued{Cert: *c, Chain: [][]byte{rootDER()}}, nil
}

func (f *fakeCA) Revoke(_ context.Context, req authority.RevokeRequest) (*authority.Revoked, error) {
	f.revoke = req
	if err := f.call("Revoke"); err != nil {
		return nil, err
	}
	c := fakeCert(req.Serial)
	c.RevokedAt, c.RevocationReason = time.Now().UTC(), 1
	return &authority.Revoked{Cert: c, ConfirmedBy: []string{"n1", "n2"}, Unconfirmed: []string{"n3"}}, nil
}

func (f *fakeCA) Cert(_ context.Context, serial string) (*fsm.Cert, error) {
	if err := f.call("Cert"); err != nil {
		return nil, err
	}
	return fakeCert(serial), nil
}

func (f *fakeCA) SearchCerts(_ context.Context, q fsm.CertQuery) ([]*fsm.Cert, []byte, error) {
	f.query = q
	if err := f.call("SearchCerts"); err != nil {
		return nil, nil, err
	}
	expired := fakeCert("02")
	expired.NotAfter = time.Now().Add(-time.Minute)
	return []*fsm.Cert{fakeCert("01"), expired}, []byte("next"), nil
}

func (f *fakeCA) Chain(*fsm.Cert) [][]byte { return [][]byte{rootDER()} }

// Publisher

func (f *fakeCA) Roots(context.Context) ([][]byte, error) {
	if err := f.call("Roots"); err != nil {
		return nil, err
	}
	return [][]byte{rootDER()}, nil
}

func (f *fakeCA) AuthorityRoots(context.Context, string) ([][]byte, error) {
	if err := f.call("AuthorityRoots"); err != nil {
		return nil, err
	}
	return [][]byte{rootDER()}, nil
}

func (f *fakeCA) IssuerCert(context.Context, string, string) ([]byte, error) {
	if err := f.call("IssuerCert"); err != nil {
		return nil, err
	}
	return rootDER(), nil
}

func (f *fakeCA) CACerts(context.Context, string) ([][]byte, error) {
	if err := f.call("CACerts"); err != nil {
		return nil, err
	}
	return [][]byte{rootDER()}, nil
}

func (f *fakeCA) CRLOf(context.Context, *fsm.Cert) (*fsm.CRL, error) {
	return nil, f.call("CRLOf")
}

// SCEP: no RA in the fake; node tests run SCEP against real clusters.
func (f *fakeCA) SCEP(context.Context, string) (*authority.SCEPRA, error) {
	if err := f.call("SCEP"); err != nil {
		return nil, err
	}
	return nil, authority.ErrNoSCEPRA
}

func (f *fakeCA) RootCert(string, string) ([]byte, error) {
	if err := f.call("RootCert"); err != nil {
		return nil, err
	}
	return rootDER(), nil
}

func (f *fakeCA) CRL(_ context.Context, name, issuer string, shard int) (*fsm.CRL, error) {
	f.crlArgs = []any{name, issuer, shard}
	if err := f.call("CRL"); err != nil {
		return nil, err
	}
	return fakeCRL("i1", 7), nil
}

func (f *fakeCA) RootCRL(context.Context, string, string) (*fsm.CRL, error) {
	if err := f.call("RootCRL"); err != nil {
		return nil, err
	}
	return fakeCRL("root", 2), nil
}

func (f *fakeCA) CRLBundle(context.Context, string) ([]*fsm.CRL, error) {
	if err := f.call("CRLBundle"); err != nil {
		return nil, err
	}
	if f.crls != nil {
		return f.crls, nil
	}
	return []*fsm.CRL{fakeCRL("root", 2), fakeCRL("i1", 7)}, nil
}

func (f *fakeCA) OCSP(_ context.Context, der []byte) ([]byte, []string, error) {
	f.ocspReq = der
	if err := f.call("OCSP"); err != nil {
		return nil, nil, err
	}
	return f.ocspResp, f.ocspStatuses, nil
}

// AdminCredentials

func (f *fakeCA) AuthenticateAdmin(_ context.Context, bearer string) (*fsm.Admin, error) {
	f.mu.Lock()
	err := f.errs["AuthenticateAdmin"]
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if bearer == "" {
		return nil, fmt.Errorf("%w: an admin bearer token or admin certificate is required", authority.ErrUnauthenticated)
	}
	a, ok := fakeAdmins[bearer]
	if !ok {
		return nil, fmt.Errorf("%w: unknown admin credential", authority.ErrUnauthenticated)
	}
	c := *a
	return &c, nil
}

func (f *fakeCA) AuthenticateAdminCert(_ context.Context, cert *x509.Certificate) (*fsm.Admin, error) {
	f.mu.Lock()
	err := f.errs["AuthenticateAdminCert"]
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if cert.Subject.CommonName != "admin carol" {
		return nil, fmt.Errorf("%w: the client certificate is not an admin certificate", authority.ErrUnauthenticated)
	}
	return &fsm.Admin{ID: "c1", Name: "carol", Role: authority.RoleAdmin, CertSerial: "0c"}, nil
}

func (f *fakeCA) Admins(context.Context) ([]*fsm.Admin, error) {
	if err := f.call("Admins"); err != nil {
		return nil, err
	}
	return []*fsm.Admin{fakeAdmins[tokAdmin], {ID: "c1", Name: "carol", Role: authority.RoleAdmin, CertSerial: "0c"}}, nil
}

func (f *fakeCA) NewAdmin(_ context.Context, req authority.AdminRequest) (*authority.NewAdminCredential, error) {
	if err := f.call("NewAdmin"); err != nil {
		return nil, err
	}
	c := &authority.NewAdminCredential{Admin: fsm.Admin{ID: "n1", Name: req.Name, Role: req.Role}}
	if len(req.CSR) > 0 {
		c.Admin.CertSerial, c.Cert, c.Chain = "0d", rootDER(), [][]byte{rootDER()}
	} else {
		c.Token = "qcat_new"
	}
	return c, nil
}

func (f *fakeCA) RevokeAdmin(context.Context, string) error { return f.call("RevokeAdmin") }

// Tokens

func (f *fakeCA) MintTokens(_ context.Context, admin *fsm.Admin, req authority.TokenRequest) ([]authority.MintedToken, error) {
	f.tokenReq = req
	if err := f.call("MintTokens"); err != nil {
		return nil, err
	}
	n := max(req.Count, 1)
	out := make([]authority.MintedToken, n)
	for i := range out {
		out[i] = authority.MintedToken{Secret: fmt.Sprintf("qcet_%d", i), Token: fsm.Token{ID: fmt.Sprintf("t%d", i),
			Provisioner: "default", SANs: req.SANs, ExpiresAt: time.Now().Add(time.Hour).UTC(), CreatedBy: authority.Actor(admin)}}
	}
	return out, nil
}

func (f *fakeCA) OutstandingTokens(context.Context, string, []byte, int) ([]*fsm.Token, []byte, error) {
	if err := f.call("OutstandingTokens"); err != nil {
		return nil, nil, err
	}
	return []*fsm.Token{{ID: "t1", Provisioner: "default", SANs: []string{"a.example"}, ExpiresAt: time.Now().Add(time.Hour)}}, nil, nil
}

func (f *fakeCA) RevokeToken(context.Context, string) error { return f.call("RevokeToken") }

func (f *fakeCA) NewEABKey(_ context.Context, _ *fsm.Admin, prov, ref string, _ time.Duration) (*fsm.ACMEEAB, error) {
	if err := f.call("NewEABKey"); err != nil {
		return nil, err
	}
	return &fsm.ACMEEAB{ID: "eab_1", Provisioner: prov, Reference: ref, Key: make([]byte, 32)}, nil
}

func (f *fakeCA) RenewalInfo(_ context.Context, serial string) (*authority.RenewalWindow, *fsm.Cert, error) {
	if err := f.call("RenewalInfo"); err != nil {
		return nil, nil, err
	}
	now := time.Now()
	return &authority.RenewalWindow{Start: now, End: now.Add(time.Hour), RetryAfter: time.Hour}, &fsm.Cert{Serial: serial}, nil
}

func (f *fakeCA) RevokeEABKey(context.Context, *fsm.Admin, string) error {
	return f.call("RevokeEABKey")
}

// Provisioners

func (f *fakeCA) Provisioner(_ context.Context, name string) (*fsm.Provisioner, error) {
	if err := f.call("Provisioner"); err != nil {
		return nil, err
	}
	return fakeProvisioner(name), nil
}

func (f *fakeCA) Provisioners(context.Context) ([]*fsm.Provisioner, error) {
	if err := f.call("Provisioners"); err != nil {
		return nil, err
	}
	return []*fsm.Provisioner{fakeProvisioner("default")}, nil
}

func (f *fakeCA) PutProvisioner(_ context.Context, p fsm.Provisioner, v uint64) error {
	f.putProv, f.putVer = p, v
	return f.call("PutProvisioner")
}

func (f *fakeCA) DeleteProvisioner(context.Context, string, bool) error {
	return f.call("DeleteProvisioner")
}

func (f *fakeCA) PutDevices(context.Context, string, []string) (int, error) {
	return 1, f.call("PutDevices")
}

func (f *fakeCA) RevokeDevice(context.Context, string, string) (*fsm.Device, error) {
	return &fsm.Device{ID: "d1", RevokedAt: time.Unix(1, 0)}, f.call("RevokeDevice")
}

func (f *fakeCA) Device(context.Context, string, string) (*fsm.Device, error) {
	return &fsm.Device{ID: "d1"}, f.call("Device")
}

func (f *fakeCA) Devices(context.Context, string, string, string, int) ([]*fsm.Device, error) {
	return []*fsm.Device{{ID: "d1"}}, f.call("Devices")
}

// Authorities

func (f *fakeCA) Authorities() ([]*fsm.Authority, error) {
	if err := f.call("Authorities"); err != nil {
		return nil, err
	}
	return []*fsm.Authority{fakeAuthority("default")}, nil
}

func (f *fakeCA) Authority(name string) (*fsm.Authority, error) {
	if err := f.call("Authority"); err != nil {
		return nil, err
	}
	return fakeAuthority(name), nil
}

func (f *fakeCA) CreateAuthority(_ context.Context, req authority.CreateAuthorityRequest) (*fsm.Authority, error) {
	if err := f.call("CreateAuthority"); err != nil {
		return nil, err
	}
	return fakeAuthority(req.Name), nil
}

func (f *fakeCA) ImportIssuer(_ context.Context, req authority.ImportRequest) (*fsm.Authority, error) {
	if err := f.call("ImportIssuer"); err != nil {
		return nil, err
	}
	return fakeAuthority(req.Name), nil
}

func (f *fakeCA) EnsureDefaultProvisioner(context.Context, string) error {
	return f.call("EnsureDefaultProvisioner")
}

func (f *fakeCA) IntermediateCSR(context.Context, authority.KeySpec, string) ([]byte, string, error) {
	if err := f.call("IntermediateCSR"); err != nil {
		return nil, "", err
	}
	return []byte("-----BEGIN CERTIFICATE REQUEST-----\n"), "softkey:/new", nil
}

func (f *fakeCA) RotateIssuer(_ context.Context, req authority.RotateRequest) (*fsm.Authority, error) {
	if err := f.call("RotateIssuer"); err != nil {
		return nil, err
	}
	return fakeAuthority(req.Name), nil
}

func (f *fakeCA) UpdateAuthority(_ context.Context, req authority.UpdateRequest) (*fsm.Authority, error) {
	f.update = req
	if err := f.call("UpdateAuthority"); err != nil {
		return nil, err
	}
	return fakeAuthority(req.Name), nil
}

func (f *fakeCA) RevokeIssuer(_ context.Context, name, _, _ string, _ bool) (*fsm.Authority, error) {
	if err := f.call("RevokeIssuer"); err != nil {
		return nil, err
	}
	a := fakeAuthority(name)
	a.Issuers[0].RevokedAt = time.Now().UTC()
	return a, nil
}

func (f *fakeCA) OfflineRootCRLRequest(_ context.Context, name, root string) (*authority.RootCRLRequest, error) {
	if err := f.call("OfflineRootCRLRequest"); err != nil {
		return nil, err
	}
	return &authority.RootCRLRequest{Authority: name, Root: root, Number: 4}, nil
}

func (f *fakeCA) ImportRootCRL(context.Context, string, []byte) (string, error) {
	if err := f.call("ImportRootCRL"); err != nil {
		return "", err
	}
	return "root-1", nil
}

func (f *fakeCA) Delegate(role, name string) (*fsm.OCSPResponder, error) {
	if err := f.call("Delegate:" + role); err != nil {
		return nil, err
	}
	return fakeResponder(name), nil
}

func (f *fakeCA) SetDelegate(_ context.Context, role string, req authority.DelegateRequest) (*fsm.OCSPResponder, error) {
	if err := f.call("SetDelegate:" + role); err != nil {
		return nil, err
	}
	return fakeResponder(req.Name), nil
}

func (f *fakeCA) DeleteDelegate(_ context.Context, role, _ string) error {
	return f.call("DeleteDelegate:" + role)
}

// AuditLog

func (f *fakeCA) Audit(_ context.Context, q fsm.AuditFilter) (fsm.AuditPage, error) {
	f.mu.Lock()
	f.filter = q
	f.mu.Unlock()
	if err := f.call("Audit"); err != nil {
		return fsm.AuditPage{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var p fsm.AuditPage
	for _, e := range f.audit {
		if e.Seq > q.After {
			if len(p.Entries) == q.Limit {
				p.More = true
				break
			}
			p.Entries = append(p.Entries, e)
		}
	}
	p.Next = q.After
	if n := len(p.Entries); n > 0 {
		p.Next = p.Entries[n-1].Seq
	}
	return p, nil
}

func (f *fakeCA) AuditHead() (uint64, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.audit); n > 0 {
		return f.audit[n-1].Seq, f.audit[n-1].Hash
	}
	return 0, ""
}

func (f *fakeCA) AppliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// WaitForChange returns once a write was applied after since, or on
// notify. Every waiter wakes: a follow whose client went and one just
// started never race for one wake-up.
func (f *fakeCA) WaitForChange(ctx context.Context, since uint64) error {
	f.mu.Lock()
	ch, applied := f.changed, f.applied
	f.mu.Unlock()
	if ch == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	if applied > since {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// notify wakes every WaitForChange.
func (f *fakeCA) notify() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.changed)
	f.changed = make(chan struct{})
}

// appendAudit adds an entry, as a committed write would.
func (f *fakeCA) appendAudit(command string) {
	f.mu.Lock()
	seq := uint64(len(f.audit) + 1)
	f.audit = append(f.audit, fsm.AuditEntry{Seq: seq, Index: seq, Command: command, Outcome: "ok", Hash: fmt.Sprint(seq)})
	f.applied++
	f.mu.Unlock()
}

// Readiness

func (f *fakeCA) CaughtUp(context.Context) error { return f.call("CaughtUp") }
func (f *fakeCA) Health(context.Context) error   { return f.call("Health") }

// fakeCluster is the cluster's side: status and operator actions.
type fakeCluster struct {
	status   cluster.Status
	err      error
	snapshot string
	restored []byte
	// writing, if set, hears when a snapshot is being written, which
	// then waits for release.
	writing, release chan struct{}
}

func (c *fakeCluster) Status() cluster.Status { return c.status }

func (c *fakeCluster) Peers() ([]cluster.Peer, error) {
	if c.err != nil {
		return nil, c.err
	}
	return []cluster.Peer{{ID: "n1", Address: "127.0.0.1:7001"}}, nil
}

func (c *fakeCluster) RemovePeer(context.Context, string) error         { return c.err }
func (c *fakeCluster) TransferLeadership(context.Context, string) error { return c.err }

func (c *fakeCluster) WriteSnapshot(_ context.Context, w io.Writer) error {
	if c.err != nil {
		return c.err
	}
	_, err := io.WriteString(w, c.snapshot)
	if c.writing != nil {
		c.writing <- struct{}{}
		<-c.release
	}
	return err
}

func (c *fakeCluster) RestoreSnapshot(_ context.Context, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	c.restored = b
	return c.err
}

var (
	_ CA       = (*fakeCA)(nil)
	_ Cluster  = (*fakeCluster)(nil)
	_ Operator = (*fakeCluster)(nil)
)

// testServer is a Server on fakes, its handler, and the fakes.
type testServer struct {
	*Server
	ca      *fakeCA
	cluster *fakeCluster
	handler http.Handler
	logs    *testwait.Buffer
}

func newTestServer(t testing.TB) *testServer {
	t.Helper()
	ts := &testServer{ca: newFakeCA(), logs: new(testwait.Buffer),
		cluster: &fakeCluster{status: cluster.Status{NodeID: "n1", LeaderID: "n1", State: "Leader"}, snapshot: "snapshot bytes"}}
	ts.Server = &Server{CA: ts.ca, Cluster: ts.cluster, Operator: ts.cluster,
		Logger:     slog.New(slog.NewTextHandler(ts.logs, nil)),
		PublicURLs: []string{"https://ca.example"}, CRLMaxAge: 5 * time.Second}
	ts.handler = ts.Routes()
	t.Cleanup(func() {
		if strings.Contains(ts.logs.String(), "panic") {
			t.Errorf("a handler panicked:\n%s", ts.logs)
		}
	})
	return ts
}

package node

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// adminCluster is a test cluster with an admin authority, for certificate
// admins (mTLS), whose leader proposes this release's admin commands.
func adminCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	c := newTestClusterWith(t, n, cluster.FastTiming(), func(c *testCluster) {
		a, err := c.pki.AdminAuthority()
		if err != nil {
			t.Fatal(err)
		}
		c.authorities = []*AuthorityConfig{a}
	})
	c.waitLogFormat()
	return c
}

// waitLogFormat waits until the leader writes this release's log format:
// it polls every server for the format it reads, so for a moment after a
// join it answers upgrade_in_progress to commands of a newer format.
func (c *testCluster) waitLogFormat() {
	c.t.Helper()
	testwait.For(c.t, 20*time.Second, "the leader to write log format "+fmt.Sprint(fsm.LogFormat), func() bool {
		st := c.Leader().node.Cluster().Status()
		return st.LogFormat != nil && *st.LogFormat == fsm.LogFormat
	})
}

// adminRecord is an admin as GET /v1/admin/admins lists it.
type adminRecord struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Role       string    `json:"role"`
	CertSerial string    `json:"cert_serial"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	RevokedAt  time.Time `json:"revoked_at"`
}

// certAdmin creates a certificate admin through tn, authorized by the
// admin certificate by, or else by the bootstrap admin token.
func (c *testCluster) certAdmin(tn *testNode, by *holder, name, role string) (*holder, adminRecord) {
	c.t.Helper()
	key := newKey(c.t)
	body := map[string]string{"name": name, "role": role, "csr": string(newCSR(c.t, key, "x.example"))}
	var r reply
	if by != nil {
		r = c.mtls(by, tn, "POST", "/v1/admin/admins", jsonBody(body), "")
	} else {
		r = c.do(tn, "POST", "/v1/admin/admins", body, c.admin)
	}
	if r.status != http.StatusCreated {
		c.t.Fatalf("create certificate admin %s: %d %s", name, r.status, r.body)
	}
	var out struct {
		Admin       adminRecord
		Certificate string
	}
	r.decode(c.t, &out)
	return &holder{key: key, cert: parsePEMCert(c.t, out.Certificate)}, out.Admin
}

// admins reads the admin records of tn's state by name (names are unique
// in these tests): admin changes are applied on every node when they return.
func (c *testCluster) admins(tn *testNode) map[string]adminRecord {
	c.t.Helper()
	as, err := tn.node.FSM().Admins()
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]adminRecord{}
	for _, a := range as {
		out[a.Name] = adminRecord{ID: a.ID, Name: a.Name, Role: a.Role, CertSerial: a.CertSerial,
			CreatedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt, RevokedAt: a.RevokedAt}
	}
	return out
}

func certStatus(c *testCluster, tn *testNode, serial string) bool {
	c.t.Helper()
	rec, err := tn.node.FSM().Cert(serial)
	if err != nil {
		c.t.Fatal(err)
	}
	return rec.Revoked()
}

// Every way to withdraw the last usable admin is refused, whoever asks:
// the admin API, certificate revocation by an admin or by an operator, and
// the holder revoking its own admin certificate over mTLS. An admin that
// expires within a day does not count.
func TestAdminLockoutPathsRefused(t *testing.T) {
	c := adminCluster(t, 3)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	alice, aliceRec := c.certAdmin(n1, nil, "alice", "admin")
	otto := c.adminToken(n2, "otto", "operator")
	dev := c.enrollHolder(n3, "device.example")

	// An operator revokes certificates, but not admin credentials.
	if r := c.do(n2, "POST", "/v1/admin/certs/"+aliceRec.CertSerial+"/revoke", nil, otto); r.status != http.StatusForbidden {
		t.Errorf("operator revokes an admin certificate through the admin API: %d %s", r.status, r.body)
	}
	if r := c.do(n3, "POST", "/v1/revoke", map[string]string{"serial": aliceRec.CertSerial}, otto); r.status != http.StatusForbidden {
		t.Errorf("operator revokes an admin certificate through /v1/revoke: %d %s", r.status, r.body)
	}
	if certStatus(c, n3, aliceRec.CertSerial) {
		t.Errorf("refused revocation left alice's certificate revoked")
	}
	if r := c.do(n2, "POST", "/v1/admin/certs/"+dev.s.Serial+"/revoke", nil, otto); r.status != http.StatusOK {
		t.Errorf("operator revokes a device certificate: %d %s", r.status, r.body)
	}

	// Alice withdraws the bootstrap admin: she is the last usable admin now.
	admins := c.admins(n1)
	if r := c.mtls(alice, n2, "DELETE", "/v1/admin/admins/"+admins["bootstrap"].ID, nil, ""); r.status != http.StatusNoContent {
		t.Fatalf("alice revokes the bootstrap admin: %d %s", r.status, r.body)
	}
	// A token admin that expires within a day is no successor.
	if r := c.mtls(alice, n1, "POST", "/v1/admin/admins", jsonBody(map[string]string{"name": "tess", "role": "admin", "ttl": "12h"}), ""); r.status != http.StatusCreated {
		t.Fatalf("create tess: %d %s", r.status, r.body)
	}
	// What a withdrawal changes: admin records and alice's certificate.
	// (Not the whole state: the leader writes on its own, a CRL for the
	// device revoked above, say.)
	before := c.admins(n1)
	for _, p := range []struct {
		name, method, path string
		body               []byte
	}{
		{"admin API", "DELETE", "/v1/admin/admins/" + aliceRec.ID, nil},
		{"certificate revocation by an admin", "POST", "/v1/admin/certs/" + aliceRec.CertSerial + "/revoke", nil},
		{"holder self-revocation", "POST", "/v1/revoke", jsonBody(map[string]string{"serial": aliceRec.CertSerial, "reason": "keyCompromise"})},
	} {
		r := c.mtls(alice, n3, p.method, p.path, p.body, "")
		if r.status != http.StatusConflict || r.errorCode() != "last_admin" {
			t.Errorf("%s of the last usable admin: %d %s, want 409 last_admin", p.name, r.status, r.body)
		}
	}
	c.WaitConverged()
	if after := c.admins(n1); !reflect.DeepEqual(after, before) || certStatus(c, n1, aliceRec.CertSerial) {
		t.Errorf("refused withdrawals changed the admins: %+v, then %+v", before, after)
	}
	if r := c.mtls(alice, n2, "GET", "/v1/admin/whoami", nil, ""); r.status != http.StatusOK {
		t.Fatalf("alice after the refused withdrawals: %d %s", r.status, r.body)
	}

	// With a second usable admin, a certificate revocation withdraws the
	// admin: the record shows it, and the certificate stops working.
	c.certAdmin(n2, alice, "bob", "admin")
	if r := c.mtls(alice, n3, "POST", "/v1/revoke", jsonBody(map[string]string{"serial": aliceRec.CertSerial, "reason": "keyCompromise"}), ""); r.status != http.StatusOK {
		t.Fatalf("alice revokes her own certificate: %d %s", r.status, r.body)
	}
	if got := c.admins(n2)["alice"]; got.RevokedAt.IsZero() {
		t.Errorf("alice's admin record after her certificate was revoked: %+v", got)
	}
	if r := c.mtls(alice, n1, "GET", "/v1/admin/whoami", nil, ""); r.status != http.StatusUnauthorized {
		t.Errorf("alice's revoked certificate still authenticates: %d", r.status)
	}
}

// Admin names are printable and bounded; a new admin's record and the
// reply that creates it carry its creation time.
func TestAdminNames(t *testing.T) {
	c := adminCluster(t, 1)
	n := c.nodes[0]
	before := n.node.FSM().Digest()
	for name, bad := range map[string]string{
		"empty": "", "too long": strings.Repeat("a", 65), "newline": `ann\nroot`, "NUL": `ann\u0000`,
		"escape": `ann\u001b[31m`, "bidi override": "ann\u202egnp", "invalid UTF-8": "ann\xff", "DEL": "ann\x7f",
		"leading space": " ann", "replacement character": "ann\ufffd", "no-break space": "ann\u00a0b",
	} {
		// Raw bytes: encoding/json would replace invalid UTF-8 before sending.
		r := c.do(n, "POST", "/v1/admin/admins", []byte(`{"role": "auditor", "name": "`+bad+`"}`), c.admin)
		if r.status != http.StatusBadRequest || r.errorCode() != "bad_request" || !strings.Contains(string(r.body), "name") {
			t.Errorf("%s: %d %s, want 400 bad_request about the name", name, r.status, r.body)
		}
	}
	// A certificate admin's name goes into a common name ("admin <name>"),
	// at most 64 characters.
	r := c.do(n, "POST", "/v1/admin/admins", map[string]string{"name": strings.Repeat("b", 60), "role": "auditor",
		"csr": string(newCSR(t, newKey(t), "x.example"))}, c.admin)
	if r.status != http.StatusBadRequest || r.errorCode() != "bad_request" {
		t.Errorf("certificate admin with a 60-character name: %d %s", r.status, r.body)
	}
	if n.node.FSM().Digest() != before {
		t.Errorf("refused names changed the state")
	}
	start := c.clock.Now().Add(-time.Second)
	r = c.do(n, "POST", "/v1/admin/admins", map[string]string{"name": "Ann Ó'Brien (audit)", "role": "auditor"}, c.admin)
	if r.status != http.StatusCreated {
		t.Fatalf("a good name: %d %s", r.status, r.body)
	}
	var out struct{ Admin adminRecord }
	r.decode(t, &out)
	if out.Admin.CreatedAt.Before(start) || out.Admin.CreatedAt.After(c.clock.Now()) {
		t.Errorf("created_at in the reply: %s", out.Admin.CreatedAt)
	}
	if got := c.admins(n)["Ann Ó'Brien (audit)"]; !got.CreatedAt.Equal(out.Admin.CreatedAt) {
		t.Errorf("created_at stored %s, replied %s", got.CreatedAt, out.Admin.CreatedAt)
	}
}

// An admin certificate renews over mTLS: the admin record follows it to the
// new certificate, the old one stops authenticating, and a withdrawn admin
// cannot renew.
func TestAdminCertificateRenewal(t *testing.T) {
	c := adminCluster(t, 3)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	alice, rec := c.certAdmin(n1, nil, "alice", "admin")
	c.clock.Advance(20 * 24 * time.Hour)
	for round := range 2 {
		r := c.mtls(alice, n2, "POST", "/v1/renew", nil, "")
		if r.status != http.StatusCreated {
			t.Fatalf("renewal %d of alice's certificate: %d %s", round, r.status, r.body)
		}
		var s signed
		r.decode(t, &s)
		next := c.holderOf(alice.key, s)
		if r := c.mtls(next, n3, "GET", "/v1/admin/whoami", nil, ""); r.status != http.StatusOK || !strings.Contains(string(r.body), `"alice"`) {
			t.Errorf("round %d: whoami with the renewed certificate: %d %s", round, r.status, r.body)
		}
		if r := c.mtls(alice, n3, "GET", "/v1/admin/whoami", nil, ""); r.status != http.StatusUnauthorized {
			t.Errorf("round %d: the superseded certificate still authenticates: %d", round, r.status)
		}
		// Asked again (the answer was lost), the same certificate comes
		// back; for another key, nothing.
		r = c.mtls(alice, n1, "POST", "/v1/renew", nil, "")
		var again signed
		if r.status != http.StatusCreated {
			t.Errorf("round %d: renewing the superseded certificate again: %d %s", round, r.status, r.body)
		} else if r.decode(t, &again); again.Serial != s.Serial || again.Certificate != s.Certificate {
			t.Errorf("round %d: renewing again gave %s, want the successor %s", round, again.Serial, s.Serial)
		}
		r = c.mtls(alice, n1, "POST", "/v1/renew", jsonBody(map[string]string{"csr": string(newCSR(t, newKey(t), "x.example"))}), "")
		if r.status != http.StatusForbidden || r.errorCode() != "admin_inactive" {
			t.Errorf("round %d: renewing the superseded certificate for a new key: %d %s", round, r.status, r.body)
		}
		got := c.admins(n1)["alice"]
		if got.ID != rec.ID || got.CertSerial != s.Serial || !got.ExpiresAt.Equal(next.cert.NotAfter) || !got.RevokedAt.IsZero() {
			t.Errorf("round %d: alice's record %+v, want id %s serial %s expiring %s", round, got, rec.ID, s.Serial, next.cert.NotAfter)
		}
		if next.cert.NotAfter.Sub(next.cert.NotBefore) != alice.cert.NotAfter.Sub(alice.cert.NotBefore) {
			t.Errorf("round %d: lifetime %s, was %s", round, next.cert.NotAfter.Sub(next.cert.NotBefore), alice.cert.NotAfter.Sub(alice.cert.NotBefore))
		}
		alice = next
		c.clock.Advance(20 * 24 * time.Hour) // past the first certificate's 30 days
	}
	// A withdrawn admin cannot renew.
	bob, _ := c.certAdmin(n2, nil, "bob", "operator")
	if r := c.mtls(alice, n1, "DELETE", "/v1/admin/admins/"+c.admins(n1)["bob"].ID, nil, ""); r.status != http.StatusNoContent {
		t.Fatalf("revoke bob: %d %s", r.status, r.body)
	}
	if r := c.mtls(bob, n3, "POST", "/v1/renew", nil, ""); r.status != http.StatusForbidden {
		t.Errorf("renewal by a revoked admin: %d %s", r.status, r.body)
	}
}

// Expiry locks every admin out: no request can prevent it. Recovery then
// needs a stopped node's data dir and the console the token is printed on:
// at the node's next start the token is committed through the log, may
// create one admin, and is used up; the audit log says it was a recovery.
func TestAdminRecoveryAfterLockout(t *testing.T) {
	c := adminCluster(t, 3)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	alice, _ := c.certAdmin(n1, nil, "alice", "admin")
	if r := c.mtls(alice, n2, "DELETE", "/v1/admin/admins/"+c.admins(n1)["bootstrap"].ID, nil, ""); r.status != http.StatusNoContent {
		t.Fatalf("alice revokes the bootstrap admin: %d %s", r.status, r.body)
	}
	c.clock.Advance(31 * 24 * time.Hour) // alice's certificate lived 30 days
	if r := c.mtls(alice, n1, "GET", "/v1/admin/whoami", nil, ""); r.status != http.StatusUnauthorized {
		t.Fatalf("alice after expiry: %d", r.status)
	}
	if r := c.mtls(alice, n1, "POST", "/v1/renew", nil, ""); r.status != http.StatusForbidden {
		t.Errorf("renewal of an expired admin certificate: %d %s", r.status, r.body)
	}
	if r := c.do(n1, "GET", "/v1/admin/whoami", nil, c.admin); r.status != http.StatusUnauthorized {
		t.Fatalf("revoked bootstrap admin: %d", r.status)
	}

	// Not on a running node, not without a node's data dir.
	if _, _, err := RequestAdminRecovery(n2.cfg.DataDir, c.clock.Now()); err == nil || !strings.Contains(err.Error(), "stop the node") {
		t.Errorf("recovery on a running node: %v", err)
	}
	if _, _, err := RequestAdminRecovery(t.TempDir(), c.clock.Now()); err == nil {
		t.Errorf("recovery without a data dir succeeded")
	}
	c.Stop(n2)
	token, _, err := RequestAdminRecovery(n2.cfg.DataDir, c.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	assertNotStored(t, n2.cfg.DataDir, token)
	c.Restart(n2)
	testwait.For(t, 20*time.Second, "the recovery token to work", func() bool {
		return c.do(n3, "GET", "/v1/admin/whoami", nil, token).status == http.StatusOK
	})
	// Removed once committed everywhere (the node waits for that first).
	testwait.For(t, 20*time.Second, "the recovery request to be removed", func() bool {
		_, err := os.Stat(filepath.Join(n2.cfg.DataDir, recoveryFile))
		return errors.Is(err, fs.ErrNotExist)
	})
	// It creates one admin, and nothing else.
	if r := c.do(n1, "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"a.example"}}, token); r.status != http.StatusForbidden {
		t.Errorf("recovery token mints an enrollment token: %d %s", r.status, r.body)
	}
	if r := c.do(n1, "POST", "/v1/admin/provisioners", fleetProvisioner(".x.example"), token); r.status != http.StatusForbidden {
		t.Errorf("recovery token changes a provisioner: %d %s", r.status, r.body)
	}
	r := c.do(n3, "POST", "/v1/admin/admins", map[string]string{"name": "carol", "role": "admin"}, token)
	if r.status != http.StatusCreated {
		t.Fatalf("recovery token creates an admin: %d %s", r.status, r.body)
	}
	var carol struct{ Token string }
	r.decode(t, &carol)
	if r := c.do(n2, "POST", "/v1/admin/admins", map[string]string{"name": "mallory", "role": "admin"}, token); r.status != http.StatusUnauthorized {
		t.Errorf("recovery token used twice: %d %s", r.status, r.body)
	}
	if r := c.do(n1, "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"a.example"}}, carol.Token); r.status != http.StatusCreated {
		t.Errorf("the recovered admin mints a token: %d %s", r.status, r.body)
	}
	// The audit log names the recovery, on every node.
	var audit struct{ Entries []fsm.AuditEntry }
	c.do(n1, "GET", "/v1/admin/audit?command=admin_create&limit=1000", nil, carol.Token).decode(t, &audit)
	var byNode, byRecovery bool
	for _, e := range audit.Entries {
		byNode = byNode || (e.Actor == "node:n2 recover-admin" && e.Outcome == "ok")
		byRecovery = byRecovery || (strings.HasPrefix(e.Actor, "recovery:") && strings.Contains(e.Note, "admin=carol") && e.Outcome == "ok")
	}
	if !byNode || !byRecovery {
		t.Errorf("audit entries of the recovery (node %v, use %v): %+v", byNode, byRecovery, audit.Entries)
	}
	// Another restart does not bring the credential back.
	c.Stop(n2)
	c.Restart(n2)
	c.WaitConverged()
	if r := c.do(n2, "GET", "/v1/admin/whoami", nil, token); r.status != http.StatusUnauthorized {
		t.Errorf("used recovery token after a restart: %d", r.status)
	}
	recoveries := 0
	for _, a := range mustAdmins(t, n2) {
		if a.Recovery {
			recoveries++
		}
	}
	if recoveries != 1 {
		t.Errorf("%d recovery credentials", recoveries)
	}
}

// assertNotStored checks that no file under dir holds secret.
func assertNotStored(t *testing.T, dir, secret string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the recovery token", path)
			}
		}
		return nil
	})
}

func mustAdmins(t *testing.T, tn *testNode) []*fsm.Admin {
	t.Helper()
	as, err := tn.node.FSM().Admins()
	if err != nil {
		t.Fatal(err)
	}
	return as
}

// The admin authority issues admin credentials only: no provisioner may be
// bound to it, so no token yields a certificate under the admin CA.
func TestNoProvisionerOnTheAdminAuthority(t *testing.T) {
	c := adminCluster(t, 1)
	n := c.nodes[0]
	before := n.node.FSM().Digest()
	d := fleetProvisioner(".fleet.example")
	d["name"], d["authority"] = "admins-by-token", "admin"
	r := c.do(n, "POST", "/v1/admin/provisioners", d, c.admin)
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "authority") {
		t.Fatalf("a provisioner on the admin authority: %d %s", r.status, r.body)
	}
	if n.node.FSM().Digest() != before {
		t.Error("the refused provisioner changed state")
	}
}

package node

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// adminToken creates an admin credential with a role and returns its token.
func (c *testCluster) adminToken(tn *testNode, name, role string) string {
	c.t.Helper()
	r := c.do(tn, "POST", "/v1/admin/admins", map[string]string{"name": name, "role": role}, c.admin)
	if r.status != http.StatusCreated {
		c.t.Fatalf("create admin: %d %s", r.status, r.body)
	}
	var out struct{ Token string }
	r.decode(c.t, &out)
	return out.Token
}

func fleetProvisioner(dns string) map[string]any {
	return map[string]any{"name": "fleet", "kind": "enrollment-token", "authority": "default",
		"policy": map[string]any{"dns": []string{dns}, "default_ttl": "2h", "max_ttl": "24h"}}
}

// A provisioner created on A, a token minted on B, an enrollment on C, each
// right after the call before it returns; then a policy change on B that C
// enforces on its very next request.
func TestAdminChangesTakeEffectEverywhere(t *testing.T) {
	c := newTestCluster(t, 3)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	if r := c.do(a, "POST", "/v1/admin/provisioners", fleetProvisioner(".fleet.example"), c.admin); r.status != http.StatusCreated {
		t.Fatalf("create provisioner: %d %s", r.status, r.body)
	}
	mint := func(tn *testNode, name string) reply {
		return c.do(tn, "POST", "/v1/admin/tokens", map[string]any{"sans": []string{name}, "provisioner": "fleet"}, c.admin)
	}
	r := mint(b, "d1.fleet.example")
	if r.status != http.StatusCreated {
		t.Fatalf("mint: %d %s", r.status, r.body)
	}
	var tok struct{ Token string }
	r.decode(t, &tok)
	s := c.sign(cc, tok.Token, newCSR(t, newKey(t), "d1.fleet.example"))
	if leaf := parsePEMCert(t, s.Certificate); leaf.NotAfter.Sub(leaf.NotBefore) != 2*time.Hour+time.Minute {
		t.Errorf("lifetime %s, want the provisioner's 2h", leaf.NotAfter.Sub(leaf.NotBefore))
	}
	r = mint(b, "d3.fleet.example") // minted under the old policy
	r.decode(t, &tok)
	older := tok.Token

	var p struct{ Version uint64 }
	c.do(b, "GET", "/v1/admin/provisioners/fleet", nil, c.admin).decode(t, &p)
	upd := fleetProvisioner(".fleet2.example")
	upd["version"] = p.Version
	if r := c.do(b, "PUT", "/v1/admin/provisioners/fleet", upd, c.admin); r.status != http.StatusOK {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	// Node C, next request: the new policy holds, at minting and at signing.
	if r := mint(cc, "d2.fleet.example"); r.status != http.StatusForbidden || r.errorCode() != "san_not_allowed" {
		t.Errorf("mint under the old policy on C: %d %s", r.status, r.body)
	}
	r = c.do(cc, "POST", "/v1/sign", map[string]string{"csr": string(newCSR(t, newKey(t), "d3.fleet.example")), "token": older}, "")
	if r.status != http.StatusForbidden || r.errorCode() != "san_not_allowed" {
		t.Errorf("token of the old policy on C: %d %s", r.status, r.body)
	}
	if r := mint(cc, "d2.fleet2.example"); r.status != http.StatusCreated {
		t.Errorf("mint under the new policy on C: %d %s", r.status, r.body)
	}
	// A second admin still holding the old version is refused (the same
	// document again would be taken as a retry of the first update).
	other := fleetProvisioner(".fleet3.example")
	other["version"] = p.Version
	if r := c.do(a, "PUT", "/v1/admin/provisioners/fleet", other, c.admin); r.status != http.StatusConflict || r.errorCode() != "version_mismatch" {
		t.Errorf("stale update: %d %s", r.status, r.body)
	}
}

func TestAdminRoles(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	auditor := c.adminToken(n, "ann", "auditor")
	operator := c.adminToken(n, "otto", "operator")
	tests := []struct {
		name, method, path string
		body               any
		bearer             string
		status             int
	}{
		{"no credentials", "GET", "/v1/admin/provisioners", nil, "", 401},
		{"auditor reads", "GET", "/v1/admin/provisioners", nil, auditor, 200},
		{"auditor reads the audit log", "GET", "/v1/admin/audit", nil, auditor, 200},
		{"auditor searches certificates", "GET", "/v1/admin/certs?status=valid", nil, auditor, 200},
		{"auditor writes", "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"a.example"}}, auditor, 403},
		{"auditor revokes", "POST", "/v1/admin/certs/abc/revoke", nil, auditor, 403},
		{"operator mints", "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"a.example"}}, operator, 201},
		{"operator changes a provisioner", "POST", "/v1/admin/provisioners", fleetProvisioner(".x.example"), operator, 403},
		{"operator creates an admin", "POST", "/v1/admin/admins", map[string]string{"name": "x", "role": "admin"}, operator, 403},
		{"operator creates an authority", "POST", "/v1/admin/authorities", map[string]string{"name": "x"}, operator, 403},
		{"admin changes a provisioner", "POST", "/v1/admin/provisioners", fleetProvisioner(".x.example"), c.admin, 201},
	}
	for _, tt := range tests {
		if r := c.do(n, tt.method, tt.path, tt.body, tt.bearer); r.status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, r.status, r.body, tt.status)
		}
	}
	// A revoked credential stops working at once.
	var admins struct{ Admins []struct{ ID, Name string } }
	c.do(n, "GET", "/v1/admin/admins", nil, c.admin).decode(t, &admins)
	for _, a := range admins.Admins {
		if a.Name == "otto" {
			if r := c.do(n, "DELETE", "/v1/admin/admins/"+a.ID, nil, c.admin); r.status != http.StatusNoContent {
				t.Fatalf("revoke admin: %d %s", r.status, r.body)
			}
		}
	}
	if r := c.do(n, "GET", "/v1/admin/whoami", nil, operator); r.status != http.StatusUnauthorized {
		t.Errorf("revoked operator: %d", r.status)
	}
}

// Invalid provisioner documents get a 400 naming the field, and nothing is
// stored.
func TestInvalidProvisionerDocuments(t *testing.T) {
	c := newTestCluster(t, 3)
	n := c.nodes[1]
	before := c.nodes[0].node.FSM().Digest()
	doc := func(mut func(p, pol map[string]any)) map[string]any {
		d := fleetProvisioner(".fleet.example")
		mut(d, d["policy"].(map[string]any))
		return d
	}
	for name, tt := range map[string]struct {
		body  any
		field string
	}{
		"bad pattern":       {doc(func(_, pol map[string]any) { pol["dns"] = []string{"ok.example", "*.*.example"} }), "policy.dns[1]"},
		"bad cidr":          {doc(func(_, pol map[string]any) { pol["ip"] = []string{"10.0.0.0"} }), "policy.ip[0]"},
		"bad uri pattern":   {doc(func(_, pol map[string]any) { pol["uri"] = []string{"spiffe://prod/x?y"} }), "policy.uri[0]"},
		"unknown authority": {doc(func(p, _ map[string]any) { p["authority"] = "nope" }), "authority"},
		"negative ttl":      {doc(func(_, pol map[string]any) { pol["default_ttl"] = "-1h" }), "policy.default_ttl"},
		"bad duration":      {doc(func(_, pol map[string]any) { pol["max_ttl"] = "a while" }), "policy.max_ttl"},
		"unknown field":     {doc(func(_, pol map[string]any) { pol["colour"] = "blue" }), "colour"},
		"bad kind":          {doc(func(p, _ map[string]any) { p["kind"] = "oidc" }), "kind"},
		"bad name":          {doc(func(p, _ map[string]any) { p["name"] = "Fleet!" }), "name"},
		"bad key type":      {doc(func(_, pol map[string]any) { pol["key_types"] = []string{"DSA"} }), "policy.key_types[0]"},
		"jwk without key":   {doc(func(p, _ map[string]any) { p["kind"] = "jwk" }), "jwk"},
	} {
		r := c.do(n, "POST", "/v1/admin/provisioners", tt.body, c.admin)
		var e struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(r.body, &e)
		if r.status != http.StatusBadRequest || !strings.Contains(e.Error.Message, tt.field) {
			t.Errorf("%s: %d %s, want 400 naming %s", name, r.status, r.body, tt.field)
		}
	}
	c.WaitConverged()
	for _, tn := range c.nodes {
		if tn.node.FSM().Digest() != before {
			t.Errorf("%s: state changed", tn.cfg.NodeName)
		}
	}
	if r := c.do(n, "GET", "/v1/admin/provisioners/fleet", nil, c.admin); r.status != http.StatusNotFound {
		t.Errorf("refused provisioner readable: %d", r.status)
	}
}

func TestProvisionerDeleteAndTokenBatch(t *testing.T) {
	c := newTestCluster(t, 3)
	n := c.nodes[2]
	if r := c.do(n, "POST", "/v1/admin/provisioners", fleetProvisioner(".fleet.example"), c.admin); r.status != http.StatusCreated {
		t.Fatal(r.status)
	}
	r := c.do(n, "POST", "/v1/admin/tokens?format=text", map[string]any{"sans": []string{"dev-{n}.fleet.example"},
		"provisioner": "fleet", "count": 45, "properties": map[string]string{"fleet": "eu-1"}}, c.admin)
	if r.status != http.StatusCreated {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	secrets := strings.Fields(string(r.body))
	if len(secrets) != 45 {
		t.Fatalf("%d tokens in the file", len(secrets))
	}
	// Each token of the file allows its own device's name.
	c.sign(c.nodes[0], secrets[6], newCSR(t, newKey(t), "dev-7.fleet.example"))
	if r := c.do(c.nodes[0], "POST", "/v1/sign", map[string]string{"csr": string(newCSR(t, newKey(t), "dev-9.fleet.example")), "token": secrets[7]}, ""); r.status != http.StatusForbidden {
		t.Errorf("token 8 for device 9's name: %d", r.status)
	}
	// Listing pages through the 44 still outstanding.
	seen := 0
	for cursor := ""; ; {
		var page struct {
			Tokens     []any
			NextCursor string `json:"next_cursor"`
		}
		c.do(n, "GET", "/v1/admin/tokens?provisioner=fleet&limit=20&cursor="+cursor, nil, c.admin).decode(t, &page)
		seen += len(page.Tokens)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if seen != 44 {
		t.Errorf("listed %d outstanding tokens, want 44", seen)
	}
	// The certificate is found by its token's property.
	var certs struct{ Certs []struct{ SANs []string } }
	c.do(n, "GET", "/v1/admin/certs?property=fleet%3Deu-1&status=valid", nil, c.admin).decode(t, &certs)
	if len(certs.Certs) != 1 || certs.Certs[0].SANs[0] != "dev-7.fleet.example" {
		t.Errorf("search by property: %+v", certs)
	}
	if r := c.do(n, "DELETE", "/v1/admin/provisioners/fleet", nil, c.admin); r.status != http.StatusConflict {
		t.Errorf("delete with outstanding tokens: %d %s", r.status, r.body)
	}
	if r := c.do(n, "DELETE", "/v1/admin/provisioners/fleet?force=true", nil, c.admin); r.status != http.StatusNoContent {
		t.Fatalf("forced delete: %d %s", r.status, r.body)
	}
	if r := c.do(c.nodes[1], "POST", "/v1/sign", map[string]string{"csr": string(newCSR(t, newKey(t), "dev-1.fleet.example")), "token": secrets[0]}, ""); r.status < 400 || r.status >= 500 {
		t.Errorf("token of a deleted provisioner: %d %s", r.status, r.body)
	}
}

// Admins with client certificates of the admin authority (mTLS).
func TestAdminClientCertificates(t *testing.T) {
	c := adminCluster(t, 3)
	key := newKey(t)
	csr := csrFor(t, key, &x509.CertificateRequest{})
	r := c.do(c.nodes[0], "POST", "/v1/admin/admins", map[string]string{"name": "alice", "role": "operator", "csr": string(csr)}, c.admin)
	if r.status != http.StatusCreated {
		t.Fatalf("create certificate admin: %d %s", r.status, r.body)
	}
	var out struct {
		Admin       struct{ ID string }
		Certificate string
		Token       string
	}
	r.decode(t, &out)
	if out.Token != "" || out.Certificate == "" {
		t.Fatalf("reply %s", r.body)
	}
	h := &holder{key: key, cert: parsePEMCert(t, out.Certificate)}
	var who struct{ Name, Role string }
	r = c.mtls(h, c.nodes[2], "GET", "/v1/admin/whoami", nil, "")
	if r.status != http.StatusOK {
		t.Fatalf("whoami with the admin certificate: %d %s", r.status, r.body)
	}
	r.decode(t, &who)
	if who.Name != "alice" || who.Role != "operator" {
		t.Errorf("whoami %+v", who)
	}
	// A device certificate is not an admin certificate.
	dev := c.enrollHolder(c.nodes[1], "device.example")
	if r := c.mtls(dev, c.nodes[2], "GET", "/v1/admin/whoami", nil, ""); r.status != http.StatusUnauthorized {
		t.Errorf("device certificate as admin: %d", r.status)
	}
	if r := c.do(c.nodes[1], "DELETE", "/v1/admin/admins/"+out.Admin.ID, nil, c.admin); r.status != http.StatusNoContent {
		t.Fatal(r.status)
	}
	if r := c.mtls(h, c.nodes[2], "GET", "/v1/admin/whoami", nil, ""); r.status != http.StatusUnauthorized {
		t.Errorf("revoked admin certificate: %d", r.status)
	}
}

// The audit log records who did what, from where, with what outcome, in the
// same chain on every node; the follow mode streams new entries.
func TestAuditLog(t *testing.T) {
	c := newTestCluster(t, 3)
	a, b := c.nodes[0], c.nodes[1]

	// Follow from node B while work happens through node A.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seq, _ := b.node.FSM().AuditHead()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("https://%s/v1/admin/audit?follow=true&after=%d", b.node.APIAddr(), seq), nil)
	req.Header.Set("Authorization", "Bearer "+c.admin)
	resp, err := c.client.Transport.RoundTrip(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("follow: %v %v", err, resp)
	}
	followed := make(chan fsm.AuditEntry, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var e fsm.AuditEntry
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				followed <- e
			}
		}
	}()

	h := c.enrollHolder(a, "audited.example")
	if r := c.mtls(h, a, "POST", "/v1/renew", nil, ""); r.status != http.StatusCreated {
		t.Fatal(r.status)
	}
	c.do(a, "POST", "/v1/revoke", map[string]string{"serial": h.s.Serial, "reason": "superseded"}, c.admin)
	c.do(a, "POST", "/v1/sign", map[string]string{"csr": "x", "token": "qcet_forged"}, "") // refused: logged locally only
	c.WaitConverged()

	var got struct{ Entries []fsm.AuditEntry }
	c.do(b, "GET", fmt.Sprintf("/v1/admin/audit?after=%d&limit=1000", seq), nil, c.admin).decode(t, &got)
	byCommand := map[string]fsm.AuditEntry{}
	for _, e := range got.Entries {
		byCommand[e.Command] = e
		if e.Outcome != "ok" {
			t.Errorf("entry %d %s: outcome %s", e.Seq, e.Command, e.Outcome)
		}
	}
	want := map[string]string{
		"token_create": "admin:bootstrap/",
		"issue":        "provisioner:default token:",
		"renew":        "cert:" + h.s.Serial,
		"revoke":       "admin:bootstrap/",
	}
	for cmd, prefix := range want {
		e, ok := byCommand[cmd]
		if !ok || !strings.HasPrefix(e.Actor, prefix) || e.Remote != "127.0.0.1" {
			t.Errorf("%s entry: %+v, want actor %s... from 127.0.0.1", cmd, e, prefix)
		}
	}
	// Every node holds the same verified chain: the same head once each
	// has applied what the leader wrote last (a background write, such as
	// a node's announcement, may land between two nodes' reads).
	for _, tn := range c.nodes {
		if n, err := tn.node.FSM().VerifyAudit(); err != nil || n == 0 {
			t.Errorf("%s: %d entries, %v", tn.cfg.NodeName, n, err)
		}
	}
	testwait.For(t, 10*time.Second, "every node to hold the same audit head", func() bool {
		_, head := a.node.FSM().AuditHead()
		for _, tn := range c.nodes {
			if _, h := tn.node.FSM().AuditHead(); h != head {
				return false
			}
		}
		return true
	})
	// The follower saw the same entries, in order.
	timeout := time.After(10 * time.Second)
	for i := range got.Entries {
		select {
		case e := <-followed:
			if e.Hash != got.Entries[i].Hash {
				t.Fatalf("followed entry %d differs", i)
			}
		case <-timeout:
			t.Fatalf("follow delivered %d of %d entries", i, len(got.Entries))
		}
	}
}

// The audit file of a node holds the replicated entries it applied and the
// requests it refused, with the rule that refused them.
func TestAuditFile(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) { c.auditFiles = true })
	n := c.nodes[0]
	c.enrollHolder(n, "filed.example")
	c.do(n, "POST", "/v1/admin/tokens", map[string]any{"sans": []string{"x.example"}}, "qcat_wrong")
	path := n.cfg.AuditFile
	testwait.For(t, 10*time.Second, "the audit file to hold the issuance and the refusal", func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), `"command":"issue"`) && strings.Contains(string(b), `"refused":true`)
	})
	b, _ := os.ReadFile(path)
	var refusal struct {
		Status int
		Code   string
		Path   string
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.Contains(line, `"refused":true`) {
			json.Unmarshal([]byte(line), &refusal)
		}
	}
	if refusal.Status != 401 || refusal.Code != "unauthorized" || refusal.Path != "/v1/admin/tokens" {
		t.Errorf("refusal line %+v", refusal)
	}
	// A restart appends only what is new.
	lines := strings.Count(string(b), `"hash"`)
	c.Stop(n)
	c.Restart(n)
	c.enrollHolder(n, "after.example")
	testwait.For(t, 10*time.Second, "new entries after restart", func() bool {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), `"hash"`) > lines
	})
	b, _ = os.ReadFile(path)
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e fsm.AuditEntry
		if json.Unmarshal([]byte(line), &e) == nil && e.Hash != "" {
			if seen[e.Hash] {
				t.Fatalf("entry %d written twice", e.Seq)
			}
			seen[e.Hash] = true
		}
	}
}

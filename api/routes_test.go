package api

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
)

// request is one request to a test server.
type request struct {
	method, path string
	token        string // bearer
	body         string
	peer         *x509.Certificate // TLS client certificate
	header       http.Header
}

func (ts *testServer) serve(rq request) *httptest.ResponseRecorder {
	var r *http.Request
	if rq.body != "" {
		r = httptest.NewRequest(rq.method, rq.path, strings.NewReader(rq.body))
	} else {
		r = httptest.NewRequest(rq.method, rq.path, nil)
	}
	if rq.token != "" {
		r.Header.Set("Authorization", "Bearer "+rq.token)
	}
	for k, v := range rq.header {
		r.Header[k] = v
	}
	if rq.peer != nil {
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{rq.peer}}
	}
	w := httptest.NewRecorder()
	ts.handler.ServeHTTP(w, r)
	return w
}

// errorReply checks that w is a JSON error of the API's one format and
// returns its code and message.
func errorReply(t *testing.T, what string, w *httptest.ResponseRecorder) (string, string) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: %d error with Content-Type %q: %s", what, w.Code, ct, w.Body)
	}
	var raw map[string]map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil || len(raw) != 1 || len(raw["error"]) != 2 {
		t.Fatalf("%s: error body %s (%v): want {\"error\": {\"code\", \"message\"}}", what, w.Body, err)
	}
	code, _ := raw["error"]["code"].(string)
	msg, _ := raw["error"]["message"].(string)
	if code == "" || msg == "" {
		t.Fatalf("%s: error body %s", what, w.Body)
	}
	return code, msg
}

func jsonObject(t *testing.T, what string, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s: body %q: %v", what, w.Body, err)
	}
	return m
}

var adminCert = &x509.Certificate{Subject: pkix.Name{CommonName: "admin carol"}}

const crlPEM = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"

// route is one endpoint: a request it answers, who may call it, and what
// a successful answer looks like.
type route struct {
	method, path, body string
	perm               authority.Permission
	admin              bool   // needs an admin credential
	status             int    // on success
	ctype              string // on success ("" for none: 204)
	keys               []string
	calls              string // the fake's method the handler relies on
}

func (rt route) name() string { return rt.method + " " + rt.path }

const (
	ctJSON = "application/json"
	ctCRL  = "application/pkix-crl"
	ctCert = "application/pkix-cert"
)

// routes lists a request for every endpoint the API serves (OCSP, health
// and readiness have tests of their own).
var routes = []route{
	{"POST", "/v1/sign", `{"csr": "PEM", "token": "qcet_x", "ttl": "1h"}`, 0, false, 201, ctJSON,
		[]string{"serial", "certificate", "chain", "not_before", "not_after"}, "Sign"},
	{"POST", "/v1/renew", `{"csr": "PEM"}`, 0, false, 201, ctJSON,
		[]string{"serial", "certificate", "chain", "renewed_from"}, "Renew"},
	{"POST", "/v1/revoke", `{"serial": "0a", "reason": "keyCompromise"}`, authority.PermOperate, true, 200, ctJSON,
		[]string{"serial", "revoked_at", "reason", "confirmed_by", "unconfirmed"}, "Revoke"},
	{"GET", "/v1/admin/whoami", "", authority.PermRead, true, 200, ctJSON, []string{"id", "name", "role", "kind"}, ""},
	{"POST", "/v1/admin/tokens", `{"sans": ["a.example"], "ttl": "1h"}`, authority.PermOperate, true, 201, ctJSON,
		[]string{"token", "id", "provisioner", "sans", "expires_at"}, "MintTokens"},
	{"GET", "/v1/admin/tokens?limit=10", "", authority.PermRead, true, 200, ctJSON, []string{"tokens", "next_cursor"}, "OutstandingTokens"},
	{"DELETE", "/v1/admin/tokens/t1", "", authority.PermOperate, true, 204, "", nil, "RevokeToken"},
	{"POST", "/v1/admin/acme/eab", `{"provisioner": "acme", "reference": "team-a", "ttl": "24h"}`, authority.PermOperate, true, 201, ctJSON,
		[]string{"id", "key", "provisioner", "expires_at"}, "NewEABKey"},
	{"DELETE", "/v1/admin/acme/eab/eab_1", "", authority.PermOperate, true, 204, "", nil, "RevokeEABKey"},
	{"GET", "/v1/admin/provisioners", "", authority.PermRead, true, 200, ctJSON, []string{"provisioners"}, "Provisioners"},
	{"POST", "/v1/admin/provisioners", `{"name": "fleet", "kind": "enrollment_token", "authority": "default", "policy": {"dns": ["*.example"], "default_ttl": "1h", "max_ttl": "24h", "renew_grace": "1h"}}`,
		authority.PermConfigure, true, 201, ctJSON, []string{"name", "kind", "authority", "policy", "version"}, "PutProvisioner"},
	{"GET", "/v1/admin/provisioners/fleet", "", authority.PermRead, true, 200, ctJSON, []string{"name", "policy", "version"}, "Provisioner"},
	{"PUT", "/v1/admin/provisioners/fleet", `{"kind": "enrollment_token", "authority": "default", "version": 3}`,
		authority.PermConfigure, true, 200, ctJSON, []string{"name", "version"}, "PutProvisioner"},
	{"DELETE", "/v1/admin/provisioners/fleet", "", authority.PermConfigure, true, 204, "", nil, "DeleteProvisioner"},
	{"GET", "/v1/admin/provisioners/factory/devices?prefix=d&limit=10", "", authority.PermRead, true, 200, ctJSON, []string{"devices"}, "Devices"},
	{"POST", "/v1/admin/provisioners/factory/devices", `{"ids": ["d1"]}`, authority.PermOperate, true, 200, ctJSON, []string{"listed"}, "PutDevices"},
	{"GET", "/v1/admin/provisioners/factory/devices/d1", "", authority.PermRead, true, 200, ctJSON, []string{"id", "listed", "revoked"}, "Device"},
	{"POST", "/v1/admin/provisioners/factory/devices/d1/revoke", "", authority.PermOperate, true, 200, ctJSON, []string{"id", "revoked"}, "RevokeDevice"},
	{"GET", "/v1/admin/certs?san=a.example&status=valid&expires_after=2026-01-01T00:00:00Z&expires_before=2027-01-01T00:00:00Z",
		"", authority.PermRead, true, 200, ctJSON, []string{"certs", "next_cursor"}, "SearchCerts"},
	{"POST", "/v1/admin/certs/0a/revoke", `{"reason": "superseded"}`, authority.PermOperate, true, 200, ctJSON,
		[]string{"serial", "status", "revoked_at", "revocation_reason", "certificate", "confirmed_by"}, "Revoke"},
	{"GET", "/v1/admin/admins", "", authority.PermRead, true, 200, ctJSON, []string{"admins"}, "Admins"},
	{"POST", "/v1/admin/admins", `{"name": "bob", "role": "operator", "ttl": "720h"}`, authority.PermCreateAdmin, true, 201, ctJSON,
		[]string{"admin", "token"}, "NewAdmin"},
	{"DELETE", "/v1/admin/admins/o1", "", authority.PermConfigure, true, 204, "", nil, "RevokeAdmin"},
	{"GET", "/v1/admin/audit?command=issue&limit=5", "", authority.PermRead, true, 200, ctJSON, []string{"entries", "more", "next_after"}, "Audit"},
	{"GET", "/v1/admin/raft/peers", "", authority.PermRead, true, 200, ctJSON, []string{"peers"}, ""},
	{"DELETE", "/v1/admin/raft/peers/n2", "", authority.PermOperate, true, 204, "", nil, ""},
	{"POST", "/v1/admin/raft/transfer-leadership", `{"to": "n2"}`, authority.PermOperate, true, 204, "", nil, ""},
	{"GET", "/v1/admin/snapshot", "", authority.PermOperate, true, 200, "application/octet-stream", nil, ""},
	{"GET", "/v1/admin/authorities", "", authority.PermRead, true, 200, ctJSON, []string{"authorities"}, "Authorities"},
	{"POST", "/v1/admin/authorities", `{"name": "fleet", "root_key": "softkey:/r", "key": "softkey:/i", "create_keys": true, "root_ttl": "87600h", "ttl": "8760h"}`,
		authority.PermConfigure, true, 201, ctJSON, []string{"name", "root", "root_id", "crl", "issuers"}, "CreateAuthority"},
	{"POST", "/v1/admin/authorities/csr", `{"key": "softkey:/i", "common_name": "fleet CA"}`, authority.PermConfigure, true, 200, ctJSON,
		[]string{"csr", "key"}, "IntermediateCSR"},
	{"POST", "/v1/admin/authorities/import", `{"name": "fleet", "root": "PEM", "chain": "PEM", "key": "softkey:/i"}`,
		authority.PermConfigure, true, 201, ctJSON, []string{"name", "issuers"}, "ImportIssuer"},
	{"GET", "/v1/admin/authorities/default", "", authority.PermRead, true, 200, ctJSON, []string{"name", "root", "issuers"}, "Authority"},
	{"POST", "/v1/admin/authorities/default/rotate", `{"key": "softkey:/j", "ttl": "8760h"}`, authority.PermConfigure, true, 200, ctJSON,
		[]string{"name", "issuers"}, "RotateIssuer"},
	{"PATCH", "/v1/admin/authorities/default", `{"base_url": "http://ca.example", "crl": {"validity": "48h", "refresh": "12h", "shards": 4}}`,
		authority.PermConfigure, true, 200, ctJSON, []string{"name", "crl"}, "UpdateAuthority"},
	{"POST", "/v1/admin/authorities/default/issuers/i1/revoke", `{"reason": "keyCompromise", "force": true}`,
		authority.PermConfigure, true, 200, ctJSON, []string{"name", "issuers"}, "RevokeIssuer"},
	{"GET", "/v1/admin/authorities/default/root-crl-request?root=r1", "", authority.PermConfigure, true, 200, ctJSON,
		[]string{"authority", "root_id", "number"}, "OfflineRootCRLRequest"},
	{"POST", "/v1/admin/authorities/default/root-crl", `{"crl": ` + fmt.Sprintf("%q", crlPEM) + `}`, authority.PermConfigure, true, 200, ctJSON,
		[]string{"root_id"}, "ImportRootCRL"},
	{"GET", "/v1/admin/authorities/default/ocsp-responder", "", authority.PermRead, true, 200, ctJSON,
		[]string{"authority", "key_uri", "ttl", "certificates", "version"}, "Delegate:"},
	{"PUT", "/v1/admin/authorities/default/ocsp-responder", `{"key": "softkey:/o", "ttl": "168h"}`, authority.PermConfigure, true, 200, ctJSON,
		[]string{"authority", "certificates"}, "SetDelegate:"},
	{"DELETE", "/v1/admin/authorities/default/ocsp-responder", "", authority.PermConfigure, true, 204, "", nil, "DeleteDelegate:"},
	{"GET", "/v1/admin/authorities/default/scep-ra", "", authority.PermRead, true, 200, ctJSON,
		[]string{"authority", "key_uri", "ttl", "certificates", "version"}, "Delegate:scep"},
	{"PUT", "/v1/admin/authorities/default/scep-ra", `{"key": "softkey:/r", "ttl": "8760h"}`, authority.PermConfigure, true, 200, ctJSON,
		[]string{"authority", "certificates"}, "SetDelegate:scep"},
	{"DELETE", "/v1/admin/authorities/default/scep-ra", "", authority.PermConfigure, true, 204, "", nil, "DeleteDelegate:scep"},
	{"GET", "/v1/certs/0a", "", 0, false, 200, ctJSON, []string{"serial", "status", "certificate", "chain", "sans"}, "Cert"},
	{"GET", "/v1/certs/0a/renewal-info", "", 0, false, 200, ctJSON, []string{"suggestedWindow"}, "RenewalInfo"},
	{"GET", "/v1/roots", "", 0, false, 200, ctJSON, []string{"roots"}, "Roots"},
	{"GET", "/v1/authorities/default/roots", "", 0, false, 200, ctJSON, []string{"roots"}, "AuthorityRoots"},
	{"GET", "/v1/crl", "", 0, false, 200, ctCRL, nil, "CRL"},
	{"GET", "/v1/authorities/default/crl", "", 0, false, 200, ctCRL, nil, "CRL"},
	{"GET", "/v1/authorities/default/issuer.crt", "", 0, false, 200, ctCert, nil, "IssuerCert"},
	{"GET", "/v1/authorities/default/issuers/i1/crl", "", 0, false, 200, ctCRL, nil, "CRL"},
	{"GET", "/v1/authorities/default/issuers/i1/crl/3", "", 0, false, 200, ctCRL, nil, "CRL"},
	{"GET", "/v1/authorities/default/issuers/i1/issuer.crt", "", 0, false, 200, ctCert, nil, "IssuerCert"},
	{"GET", "/v1/authorities/default/roots/r1/crl", "", 0, false, 200, ctCRL, nil, "RootCRL"},
	{"GET", "/v1/authorities/default/roots/r1/root.crt", "", 0, false, 200, ctCert, nil, "RootCert"},
	{"GET", "/v1/authorities/default/crls.pem", "", 0, false, 200, "application/x-pem-file", nil, "CRLBundle"},
}

// Every route answers a good request with its status, content type and
// the fields clients read, and calls what it relies on.
func TestRoutesAnswer(t *testing.T) {
	for _, rt := range routes {
		t.Run(rt.name(), func(t *testing.T) {
			ts := newTestServer(t)
			w := ts.serve(request{method: rt.method, path: rt.path, body: rt.body, token: tokAdmin})
			if w.Code != rt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, rt.status, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != rt.ctype {
				t.Fatalf("Content-Type %q, want %q", ct, rt.ctype)
			}
			if rt.status == http.StatusNoContent && w.Body.Len() != 0 {
				t.Fatalf("204 with a body: %q", w.Body)
			}
			if len(rt.keys) > 0 {
				m := jsonObject(t, rt.name(), w)
				for _, k := range rt.keys {
					if _, ok := m[k]; !ok {
						t.Errorf("no %q in %s", k, w.Body)
					}
				}
			}
			if rt.calls != "" && !ts.ca.called(rt.calls) {
				t.Errorf("%s was not called (calls: %v)", rt.calls, ts.ca.calls)
			}
		})
	}
}

// Every route of the mux is in the table above, or tested on its own.
func TestEveryRouteIsTested(t *testing.T) {
	tested := map[string]bool{"GET /v1/ocsp/{req...}": true, "POST /v1/ocsp": true, "GET /v1/health": true, "GET /v1/ready": true,
		"POST /v1/admin/snapshot": true, "GET /v1/metrics": true, "GET /metrics": true, "/v1/internal/": true}
	ts := newTestServer(t)
	for _, rt := range routes {
		r := httptest.NewRequest(rt.method, rt.path, nil)
		_, pattern := ts.routeOf(r)
		tested[pattern] = true
	}
	var missing []string
	for _, p := range muxPatterns() {
		if !tested[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("routes without a test: %v", missing)
	}
}

// routeOf is the mux pattern that serves r.
func (ts *testServer) routeOf(r *http.Request) (http.Handler, string) {
	mux := http.NewServeMux()
	for _, p := range muxPatterns() {
		mux.HandleFunc(p, func(http.ResponseWriter, *http.Request) {})
	}
	return mux.Handler(r)
}

// muxPatterns are the patterns api.go registers, read from its source: a
// route added there without a test fails TestEveryRouteIsTested.
func muxPatterns() []string {
	src, err := os.ReadFile("api.go")
	if err != nil {
		panic(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`mux\.Handle(?:Func)?\("([^"]+)"`).FindAllSubmatch(src, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

// What each route does with its request, beyond the shape of the answer.
func TestRoutesPassTheRequestOn(t *testing.T) {
	ts := newTestServer(t)

	ts.serve(request{method: "POST", path: "/v1/sign", body: `{"csr": "PEM", "token": "qcet_x", "ttl": "2h"}`})
	if string(ts.ca.sign.CSR) != "PEM" || ts.ca.sign.Token != "qcet_x" || ts.ca.sign.TTL != 2*time.Hour ||
		!slices.Contains(ts.ca.sign.Audiences, "https://ca.example/v1/sign") {
		t.Errorf("sign request %+v", ts.ca.sign)
	}

	// Renewal: the TLS client certificate, or a renewal token; no body is
	// a renewal with the same key.
	w := ts.serve(request{method: "POST", path: "/v1/renew", peer: adminCert})
	if w.Code != 201 || ts.ca.renew.PeerCert != adminCert || len(ts.ca.renew.CSR) != 0 {
		t.Errorf("renew over mTLS: %d %+v", w.Code, ts.ca.renew)
	}
	ts.serve(request{method: "POST", path: "/v1/renew", token: "jws"})
	if ts.ca.renew.Bearer != "jws" || !slices.Contains(ts.ca.renew.Audiences, "https://ca.example:443/v1/renew") {
		t.Errorf("renew with a token: %+v", ts.ca.renew)
	}

	// Revocation by the holder (mTLS, no token) names no admin.
	w = ts.serve(request{method: "POST", path: "/v1/revoke", body: `{"serial": "0a"}`, peer: adminCert})
	if w.Code != 200 || ts.ca.revoke.Holder != adminCert || ts.ca.revoke.Admin != nil {
		t.Errorf("holder revocation: %d %+v", w.Code, ts.ca.revoke)
	}
	w = ts.serve(request{method: "POST", path: "/v1/revoke", body: `{"serial": "0a"}`, token: tokOperator})
	if w.Code != 200 || ts.ca.revoke.Admin == nil || ts.ca.revoke.Admin.ID != "o1" {
		t.Errorf("operator revocation: %d %+v", w.Code, ts.ca.revoke)
	}
	w = ts.serve(request{method: "POST", path: "/v1/admin/certs/0b/revoke", token: tokOperator})
	if w.Code != 200 || ts.ca.revoke.Serial != "0b" || ts.ca.revoke.Reason != "" {
		t.Errorf("admin revocation without a body: %d %+v", w.Code, ts.ca.revoke)
	}

	// A token batch, as JSON and as plain lines.
	w = ts.serve(request{method: "POST", path: "/v1/admin/tokens", token: tokOperator, body: `{"sans": ["d{n}.example"], "count": 3}`})
	if m := jsonObject(t, "batch", w); w.Code != 201 || len(m["tokens"].([]any)) != 3 || ts.ca.tokenReq.Count != 3 {
		t.Errorf("token batch: %d %s", w.Code, w.Body)
	}
	w = ts.serve(request{method: "POST", path: "/v1/admin/tokens?format=text", token: tokOperator, body: `{"sans": ["d{n}.example"], "count": 2}`})
	if w.Code != 201 || w.Header().Get("Content-Type") != "text/plain; charset=utf-8" || w.Body.String() != "qcet_0\nqcet_1\n" {
		t.Errorf("token batch as text: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}

	// A certificate admin gets its certificate and chain, not a token.
	w = ts.serve(request{method: "POST", path: "/v1/admin/admins", token: tokAdmin, body: `{"name": "carol", "role": "admin", "csr": "PEM"}`})
	if m := jsonObject(t, "cert admin", w); w.Code != 201 || m["certificate"] == nil || m["chain"] == nil || m["token"] != nil {
		t.Errorf("certificate admin: %d %s", w.Code, w.Body)
	}
	// The admin authenticated by its client certificate.
	w = ts.serve(request{method: "GET", path: "/v1/admin/whoami", peer: adminCert})
	if m := jsonObject(t, "whoami", w); w.Code != 200 || m["name"] != "carol" {
		t.Errorf("whoami over mTLS: %d %s", w.Code, w.Body)
	}

	// A provisioner is created at version 0 and replaced at the version read.
	ts.serve(request{method: "POST", path: "/v1/admin/provisioners", token: tokAdmin, body: `{"name": "p", "kind": "jwk", "authority": "default", "policy": {"max_ttl": "2h"}}`})
	if ts.ca.putVer != 0 || ts.ca.putProv.Name != "p" || ts.ca.putProv.Policy.MaxTTL != 2*time.Hour {
		t.Errorf("create provisioner: %d %+v", ts.ca.putVer, ts.ca.putProv)
	}
	ts.serve(request{method: "PUT", path: "/v1/admin/provisioners/p", token: tokAdmin, body: `{"version": 5}`})
	if ts.ca.putVer != 5 || ts.ca.putProv.Name != "p" {
		t.Errorf("update provisioner: %d %+v", ts.ca.putVer, ts.ca.putProv)
	}

	// CRL settings: shards alone leave validity and refresh alone.
	ts.serve(request{method: "PATCH", path: "/v1/admin/authorities/default", token: tokAdmin, body: `{"crl": {"shards": 8}}`})
	if u := ts.ca.update; u.Name != "default" || u.CRL != nil || u.CRLShards == nil || *u.CRLShards != 8 {
		t.Errorf("update shards: %+v", u)
	}
	ts.serve(request{method: "PATCH", path: "/v1/admin/authorities/default", token: tokAdmin, body: `{"crl": {"validity": "48h"}}`})
	if u := ts.ca.update; u.CRL == nil || u.CRL.Validity != 48*time.Hour || u.CRLShards != nil {
		t.Errorf("update validity: %+v", u)
	}

	// Searches: the query, and a serial answered from the record.
	ts.serve(request{method: "GET", path: "/v1/admin/certs?provisioner=p&property=k%3Dv&limit=7&cursor=bmV4dA", token: tokAuditor})
	if q := ts.ca.query; q.Provisioner != "p" || q.Property != "k=v" || q.Limit != 7 || string(q.Cursor) != "next" {
		t.Errorf("search query %+v", q)
	}
	w = ts.serve(request{method: "GET", path: "/v1/admin/certs?serial=0f", token: tokAuditor})
	if m := jsonObject(t, "by serial", w); w.Code != 200 || len(m["certs"].([]any)) != 1 || m["next_cursor"] != "" {
		t.Errorf("search by serial: %d %s", w.Code, w.Body)
	}
	w = ts.serve(request{method: "GET", path: "/v1/admin/certs", token: tokAuditor})
	var page struct {
		Certs []struct{ Status string } `json:"certs"`
		Next  string                    `json:"next_cursor"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || len(page.Certs) != 2 || page.Certs[0].Status != "valid" ||
		page.Certs[1].Status != "expired" || page.Next != "bmV4dA" {
		t.Errorf("search page: %s", w.Body)
	}

	// An audit page without entries is a list, not null.
	w = ts.serve(request{method: "GET", path: "/v1/admin/audit?after=3&actor=admin:alice", token: tokAuditor})
	if m := jsonObject(t, "audit", w); w.Code != 200 || m["entries"] == nil || ts.ca.filter.After != 3 || ts.ca.filter.Actor != "admin:alice" ||
		ts.ca.filter.Limit != fsm.DefaultAuditLimit {
		t.Errorf("audit: %d %s %+v", w.Code, w.Body, ts.ca.filter)
	}

	// A new authority is answered once a new cluster has a provisioner
	// for it.
	ts.ca.errs["EnsureDefaultProvisioner"] = cluster.ErrNoLeader
	w = ts.serve(request{method: "POST", path: "/v1/admin/authorities/import", token: tokAdmin, body: `{"name": "fleet"}`})
	if code, _ := errorReply(t, "no default provisioner", w); w.Code != 503 || code != "no_leader" {
		t.Errorf("authority without its provisioner: %d %s", w.Code, code)
	}

	// The snapshot download.
	w = ts.serve(request{method: "GET", path: "/v1/admin/snapshot", token: tokOperator})
	if w.Body.String() != "snapshot bytes" || !strings.HasPrefix(w.Header().Get("Content-Disposition"), `attachment; filename="quorumca-`) {
		t.Errorf("snapshot: %q %q", w.Body, w.Header().Get("Content-Disposition"))
	}
}

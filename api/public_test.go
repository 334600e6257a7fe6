package api

import (
	"bytes"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/keyrate"
	"github.com/quorumca/quorumca/signer"
)

// signedOCSP is a good answer signed by the test root.
func signedOCSP(t *testing.T) []byte {
	t.Helper()
	root, key := testPKI()
	tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: big.NewInt(10),
		ThisUpdate: time.Now().Add(-time.Minute).Truncate(time.Second), NextUpdate: time.Now().Add(time.Hour).Truncate(time.Second)}
	der, err := ocsp.CreateResponse(root, root, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// nonceOCSP is a good answer that echoes a nonce in its responseExtensions
// (x/crypto/ocsp writes none there); its signature is not checked.
func nonceOCSP(t *testing.T, nonce []byte) []byte {
	t.Helper()
	type single struct {
		CertID struct {
			Hash                    pkix.AlgorithmIdentifier
			NameHash, IssuerKeyHash []byte
			Serial                  *big.Int
		}
		Good       asn1.Flag `asn1:"tag:0,optional"`
		ThisUpdate time.Time `asn1:"generalized"`
		NextUpdate time.Time `asn1:"generalized,explicit,tag:0,optional"`
	}
	type responseData struct {
		ResponderKeyHash []byte    `asn1:"explicit,tag:2"`
		ProducedAt       time.Time `asn1:"generalized"`
		Responses        []single
		Extensions       []pkix.Extension `asn1:"explicit,tag:1,optional"`
	}
	type basic struct {
		TBS       responseData
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}
	now := time.Now().UTC().Truncate(time.Second)
	one := single{ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour), Good: true}
	one.CertID.Hash.Algorithm, one.CertID.Serial = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, big.NewInt(10)
	b, err := asn1.Marshal(basic{TBS: responseData{ResponderKeyHash: []byte{1}, ProducedAt: now, Responses: []single{one},
		Extensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}, Value: nonce}}},
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}}, Signature: asn1.BitString{Bytes: []byte{0}, BitLength: 8}})
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(struct {
		Status   asn1.Enumerated
		Response struct {
			Type  asn1.ObjectIdentifier
			Basic []byte
		} `asn1:"explicit,tag:0"`
	}{Response: struct {
		Type  asn1.ObjectIdentifier
		Basic []byte
	}{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}, b}})
	if err != nil {
		t.Fatal(err)
	}
	if info, ok := authority.ReadOCSPResponse(der); !ok || !bytes.Equal(info.Nonce, nonce) {
		t.Fatalf("the test's answer with a nonce does not read back: %+v %v", info, ok)
	}
	return der
}

// ocspRequestDER is a request for the test root's serial 10.
func ocspRequestDER(t *testing.T) []byte {
	t.Helper()
	root, _ := testPKI()
	b, err := ocsp.CreateRequest(root, root, &ocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ocspCount(ts *testServer, status string) float64 {
	var m dto.Metric
	if err := ts.ops.ocsp.WithLabelValues(status).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// A signed answer to a GET is cacheable until its nextUpdate (RFC 5019),
// and revalidated by its ETag; one to a POST is not cached; one with a
// nonce is that request's alone.
func TestOCSPAnswers(t *testing.T) {
	ts := newTestServer(t)
	req := ocspRequestDER(t)
	ts.ca.ocspResp, ts.ca.ocspStatuses = signedOCSP(t), []string{authority.OCSPGood}

	get := "/v1/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(req))
	w := ts.serve(request{method: "GET", path: get})
	h := w.Header()
	if w.Code != 200 || h.Get("Content-Type") != "application/ocsp-response" || !bytes.Equal(w.Body.Bytes(), ts.ca.ocspResp) {
		t.Fatalf("GET: %d %q", w.Code, h.Get("Content-Type"))
	}
	if !bytes.Equal(ts.ca.ocspReq, req) {
		t.Fatal("the request reached the authority changed")
	}
	cc := h.Get("Cache-Control")
	age, err := strconv.Atoi(strings.TrimPrefix(strings.Split(cc, ",")[0], "max-age="))
	if err != nil || age < 3500 || age > 3600 || !strings.HasSuffix(cc, ", public, no-transform, must-revalidate") ||
		h.Get("ETag") == "" || h.Get("Expires") == "" || h.Get("Last-Modified") == "" {
		t.Fatalf("GET caching headers: %v", h)
	}
	w = ts.serve(request{method: "GET", path: get, header: http.Header{"If-None-Match": {h.Get("ETag")}}})
	if w.Code != http.StatusNotModified {
		t.Fatalf("revalidation: %d", w.Code)
	}
	if got := ocspCount(ts, authority.OCSPGood); got != 2 {
		t.Fatalf("good answers counted %v, want 2", got)
	}

	// Clients that leave '+' and '/' raw in the path are understood too.
	raw := base64.StdEncoding.EncodeToString(req)
	if w := ts.serve(request{method: "GET", path: "/v1/ocsp/" + raw}); w.Code != 200 || !bytes.Equal(ts.ca.ocspReq, req) {
		t.Fatalf("GET with raw base64: %d", w.Code)
	}

	w = ts.serve(request{method: "POST", path: "/v1/ocsp", body: string(req)})
	if w.Code != 200 || w.Header().Get("Cache-Control") != "" || w.Header().Get("ETag") != "" || !bytes.Equal(w.Body.Bytes(), ts.ca.ocspResp) {
		t.Fatalf("POST: %d %v", w.Code, w.Header())
	}

	ts.ca.ocspResp = nonceOCSP(t, []byte{4, 2, 0xca, 0xfe})
	for _, m := range []string{"GET", "POST"} {
		rq := request{method: m, path: get}
		if m == "POST" {
			rq = request{method: m, path: "/v1/ocsp", body: string(req)}
		}
		if w := ts.serve(rq); w.Code != 200 || w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("ETag") != "" {
			t.Fatalf("%s with a nonce: %d %v", m, w.Code, w.Header())
		}
	}

	// Not issued here: the unsigned "unauthorized", an answer (200).
	ts.ca.ocspResp, ts.ca.ocspStatuses = ocsp.UnauthorizedErrorResponse, nil
	w = ts.serve(request{method: "POST", path: "/v1/ocsp", body: string(req)})
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), ocsp.UnauthorizedErrorResponse) || ocspCount(ts, "unauthorized") != 1 {
		t.Fatalf("unauthorized: %d %x", w.Code, w.Body)
	}
}

// Every OCSP refusal is an OCSP response, never JSON: malformedRequest for
// what is not a request, tryLater (with Retry-After, never cached) for
// what cannot be answered now, internalError for the rest. None is a 200.
func TestOCSPErrorsAreOCSPResponses(t *testing.T) {
	type want struct {
		status int
		body   []byte
		count  string
	}
	check := func(t *testing.T, what string, ts *testServer, w *httptest.ResponseRecorder, wt want) {
		t.Helper()
		before := ocspCount(ts, wt.count) - 1
		if w.Code != wt.status || w.Header().Get("Content-Type") != "application/ocsp-response" || !bytes.Equal(w.Body.Bytes(), wt.body) {
			t.Errorf("%s: %d %q %x, want %d %x", what, w.Code, w.Header().Get("Content-Type"), w.Body, wt.status, wt.body)
		}
		if wt.count == "tryLater" && (w.Header().Get("Retry-After") == "" || w.Header().Get("Cache-Control") != "no-store") {
			t.Errorf("%s: tryLater without Retry-After or no-store: %v", what, w.Header())
		}
		if before != 0 {
			t.Errorf("%s: %s counted %v times", what, wt.count, before+1)
		}
	}
	malformed := func(status int) want { return want{status, ocsp.MalformedRequestErrorResponse, "malformed"} }
	tryLater := func(status int) want { return want{status, ocsp.TryLaterErrorResponse, "tryLater"} }

	req := string(ocspRequestDER(t))
	for _, tt := range []struct {
		what string
		rq   request
		want want
	}{
		{"GET of no base64", request{method: "GET", path: "/v1/ocsp/!!!not-base64"}, malformed(400)},
		{"GET of too much", request{method: "GET", path: "/v1/ocsp/" + base64.StdEncoding.EncodeToString(make([]byte, maxOCSPRequest+1))}, malformed(400)},
		{"POST too large", request{method: "POST", path: "/v1/ocsp", body: strings.Repeat("x", maxOCSPRequest+1)}, malformed(413)},
	} {
		ts := newTestServer(t)
		check(t, tt.what, ts, ts.serve(tt.rq), tt.want)
		if ts.ca.called("OCSP") {
			t.Errorf("%s: the authority was asked", tt.what)
		}
	}

	for _, tt := range errorCases() {
		ts := newTestServer(t)
		ts.ca.fail = tt.err
		wt := malformed(tt.status)
		switch {
		case tt.status == 503 || tt.status == 429:
			wt = tryLater(tt.status)
		case tt.status >= 500:
			wt = want{tt.status, ocsp.InternalErrorErrorResponse, "internalError"}
		}
		check(t, fmt.Sprint(tt.err), ts, ts.serve(request{method: "POST", path: "/v1/ocsp", body: req}), wt)
	}
	// The authority's own word for a request it cannot parse.
	ts := newTestServer(t)
	ts.ca.fail = fmt.Errorf("%w: 21 certificates asked about, 1 to 20 answered", authority.ErrOCSPMalformed)
	check(t, "too many certificates", ts, ts.serve(request{method: "POST", path: "/v1/ocsp", body: req}), malformed(400))
}

// Each source address has an OCSP budget; beyond it, tryLater and 429
// with when to ask again, before the authority is asked anything.
func TestOCSPBudgetPerSource(t *testing.T) {
	ts := newTestServer(t)
	ts.OCSPLimit = keyrate.New(0.5, 1, 100)
	ts.ca.ocspResp, ts.ca.ocspStatuses = signedOCSP(t), []string{authority.OCSPGood}
	req := string(ocspRequestDER(t))
	if w := ts.serve(request{method: "POST", path: "/v1/ocsp", body: req}); w.Code != 200 {
		t.Fatalf("first request: %d", w.Code)
	}
	ts.ca.calls = nil
	w := ts.serve(request{method: "POST", path: "/v1/ocsp", body: req})
	retry, _ := strconv.Atoi(w.Header().Get("Retry-After"))
	if w.Code != 429 || !bytes.Equal(w.Body.Bytes(), ocsp.TryLaterErrorResponse) || retry < 1 || retry > 2 || ts.ca.called("OCSP") {
		t.Fatalf("over the budget: %d %v", w.Code, w.Header())
	}
}

// The shard of a CRL's path is a number as the CRL's URL writes it: any
// other segment is no CRL (404), and the authority is not asked.
func TestCRLPaths(t *testing.T) {
	for _, tt := range []struct {
		path string
		args []any // name, issuer, shard the authority is asked for
	}{
		{"/v1/crl", []any{"default", "", -1}},
		{"/v1/authorities/fleet/crl", []any{"fleet", "", -1}},
		{"/v1/authorities/fleet/issuers/i1/crl", []any{"fleet", "i1", -1}},
		{"/v1/authorities/fleet/issuers/i1/crl/0", []any{"fleet", "i1", 0}},
		{"/v1/authorities/fleet/issuers/i1/crl/1023", []any{"fleet", "i1", 1023}},
	} {
		ts := newTestServer(t)
		if w := ts.serve(request{method: "GET", path: tt.path}); w.Code != 200 || !slices.Equal(ts.ca.crlArgs, tt.args) {
			t.Errorf("%s: %d, asked for %v, want %v", tt.path, w.Code, ts.ca.crlArgs, tt.args)
		}
	}
	for _, shard := range []string{"x", "-1", "01", "+1", "1x", "0x1", "1.0", "%20", "99999999999999999999999"} {
		ts := newTestServer(t)
		w := ts.serve(request{method: "GET", path: "/v1/authorities/fleet/issuers/i1/crl/" + shard})
		if w.Code != 404 {
			t.Errorf("shard %q: %d, want 404", shard, w.Code)
			continue
		}
		if code, msg := errorReply(t, shard, w); code != "not_found" || !strings.Contains(msg, "no such CRL shard") {
			t.Errorf("shard %q: %s %q", shard, code, msg)
		}
		if ts.ca.called("CRL") {
			t.Errorf("shard %q: the authority was asked", shard)
		}
	}
	// A shard the issuer does not have is the authority's 404.
	ts := newTestServer(t)
	ts.ca.fail = fmt.Errorf("%w: issuer i1 of fleet has 4 CRL shards", authority.ErrNotFound)
	if w := ts.serve(request{method: "GET", path: "/v1/authorities/fleet/issuers/i1/crl/4"}); w.Code != 404 {
		t.Errorf("shard past the issuer's: %d", w.Code)
	}
}

// A CRL is cached at most the CRL interval and never past its nextUpdate,
// revalidated by an ETag of the CRLs' numbers; a bundle is PEM.
func TestCRLCaching(t *testing.T) {
	ts := newTestServer(t)
	w := ts.serve(request{method: "GET", path: "/v1/crl"})
	h := w.Header()
	if w.Code != 200 || w.Body.String() != "crl-i1" || h.Get("Cache-Control") != "public, max-age=5, must-revalidate" ||
		h.Get("Last-Modified") == "" || h.Get("Expires") == "" || len(h.Get("ETag")) != 34 {
		t.Fatalf("CRL: %d %q %v", w.Code, w.Body, h)
	}
	if w := ts.serve(request{method: "GET", path: "/v1/crl", header: http.Header{"If-None-Match": {h.Get("ETag")}}}); w.Code != 304 || w.Body.Len() != 0 {
		t.Fatalf("revalidation: %d", w.Code)
	}

	w = ts.serve(request{method: "GET", path: "/v1/authorities/default/crls.pem"})
	etag := w.Header().Get("ETag")
	var n int
	for rest := w.Body.Bytes(); ; n++ {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "X509 CRL" {
			t.Fatalf("bundle block %q", b.Type)
		}
	}
	if n != 2 || w.Header().Get("Content-Type") != "application/x-pem-file" {
		t.Fatalf("bundle: %d CRLs, %q", n, w.Header().Get("Content-Type"))
	}
	// A new CRL number is a new ETag; a CRL that ends soon is cached less.
	soon := fakeCRL("i1", 8)
	soon.NextUpdate = time.Now().Add(2 * time.Second)
	ts.ca.crls = []*fsm.CRL{fakeCRL("root", 2), soon}
	w = ts.serve(request{method: "GET", path: "/v1/authorities/default/crls.pem"})
	if w.Header().Get("ETag") == etag || !strings.Contains(w.Header().Get("Cache-Control"), "max-age=1,") {
		t.Fatalf("bundle after a new CRL: %v", w.Header())
	}
}

// The plain-HTTP listener serves what relying parties fetch, and nothing
// that needs a credential.
func TestPublicRoutes(t *testing.T) {
	ts := newTestServer(t)
	h := ts.PublicRoutes()
	for path, want := range map[string]int{"/v1/crl": 200, "/v1/authorities/default/issuer.crt": 200, "/v1/admin/whoami": 404, "/v1/sign": 404} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != want {
			t.Errorf("%s: %d, want %d", path, w.Code, want)
		}
	}
}

// The internal RPC is mounted under /v1/internal/ when there is one.
func TestInternalRoutes(t *testing.T) {
	ts := newTestServer(t)
	if w := ts.serve(request{method: "POST", path: "/v1/internal/apply"}); w.Code != 404 {
		t.Fatalf("no internal handler: %d", w.Code)
	}
	ts.Internal = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	ts.handler = ts.Routes()
	if w := ts.serve(request{method: "POST", path: "/v1/internal/apply"}); w.Code != http.StatusTeapot {
		t.Fatalf("internal handler: %d", w.Code)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	ts := newTestServer(t)
	w := ts.serve(request{method: "GET", path: "/v1/health"})
	if m := jsonObject(t, "health", w); w.Code != 200 || m["node"] != "n1" || m["leader"] != "n1" || m["raft_state"] != "Leader" {
		t.Fatalf("health: %d %s", w.Code, w.Body)
	}

	for _, tt := range []struct {
		name   string
		status cluster.Status
		err    map[string]error
		code   int
		ecode  string
		retry  string
	}{
		{"ready", cluster.Status{NodeID: "n2", LeaderID: "n1"}, nil, 200, "", ""},
		{"no leader", cluster.Status{NodeID: "n2"}, nil, 503, "no_leader", ""},
		{"leader silent", cluster.Status{NodeID: "n2", LeaderID: "n1", LastContact: 11}, nil, 503, "leader_unreachable", ""},
		{"behind", cluster.Status{NodeID: "n2", LeaderID: "n1", CommitIndex: 5000, AppliedIndex: 10}, nil, 503, "catching_up", ""},
		{"not caught up", cluster.Status{NodeID: "n2", LeaderID: "n1"}, map[string]error{"CaughtUp": cluster.ErrTimeout}, 503, "catching_up", "1"},
		{"signer down", cluster.Status{NodeID: "n2", LeaderID: "n1"}, map[string]error{"Health": fmt.Errorf("%w: kms", signer.ErrUnavailable)}, 503, "signer_unavailable", "1"},
		{"no authority", cluster.Status{NodeID: "n2", LeaderID: "n1"}, map[string]error{"Health": authority.ErrNoAuthority}, 503, "no_authority", "1"},
	} {
		ts := newTestServer(t)
		ts.cluster.status = tt.status
		for k, v := range tt.err {
			ts.ca.errs[k] = v
		}
		w := ts.serve(request{method: "GET", path: "/v1/ready"})
		if w.Code != tt.code || w.Header().Get("Retry-After") != tt.retry {
			t.Errorf("%s: %d Retry-After %q, want %d %q: %s", tt.name, w.Code, w.Header().Get("Retry-After"), tt.code, tt.retry, w.Body)
			continue
		}
		if tt.code == 200 {
			if m := jsonObject(t, tt.name, w); m["ready"] != true || m["node"] != "n2" {
				t.Errorf("%s: %s", tt.name, w.Body)
			}
		} else if code, _ := errorReply(t, tt.name, w); code != tt.ecode {
			t.Errorf("%s: code %s, want %s", tt.name, code, tt.ecode)
		}
	}
}

// A raw base64 OCSP GET whose path holds "//" (data, not structure)
// reaches the responder unchanged, not a redirect to a cleaned path.
func TestOCSPGetRawBase64WithSlashes(t *testing.T) {
	ts := newTestServer(t)
	for _, req := range [][]byte{{0x30, 0x03, 0xff, 0xff, 0xff, 0x01}, {0xff, 0xff, 0xff, 0x30, 0x01, 0x02}} {
		raw := base64.StdEncoding.EncodeToString(req)
		if !strings.Contains(raw, "//") {
			t.Fatalf("%s has no //", raw)
		}
		w := ts.serve(request{method: "GET", path: "/v1/ocsp/" + raw})
		if w.Code != http.StatusOK || !bytes.Equal(ts.ca.ocspReq, req) {
			t.Errorf("%s: %d %s, the CA got %x", raw, w.Code, w.Header().Get("Location"), ts.ca.ocspReq)
		}
	}
}

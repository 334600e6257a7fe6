package api

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
)

func estRequest(method, path, body, user, pass string) request {
	h := http.Header{"Content-Type": {"application/pkcs10"}}
	if user != "" {
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	}
	return request{method: method, path: path, body: body, header: h}
}

// The EST paths pass what they read on to the authority: the token and
// its ID from Basic credentials, the labelled provisioner, the CSR (as
// PEM, from base64 with line breaks), the TLS client certificate.
func TestESTPassesTheRequestOn(t *testing.T) {
	ts := newTestServer(t)
	csr := base64.StdEncoding.EncodeToString([]byte("csr-der"))
	body := csr[:4] + "\r\n" + csr[4:] + "\n"
	w := ts.serve(estRequest("POST", "/.well-known/est/devices/simpleenroll", body, "tok1", "qcet_secret"))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/pkcs7-mime; smime-type=certs-only" {
		t.Fatalf("simpleenroll: %d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if r := ts.ca.sign; r.Token != "qcet_secret" || r.TokenID != "tok1" || r.Provisioner != "devices" ||
		!strings.Contains(string(r.CSR), "BEGIN CERTIFICATE REQUEST") {
		t.Fatalf("sign request %+v", r)
	}
	der, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(w.Body.String(), "\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	var ci struct {
		Type    asn1.ObjectIdentifier
		Content asn1.RawValue `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(der, &ci); err != nil || !ci.Type.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}) ||
		!bytes.Contains(ci.Content.Bytes, []byte("der-0a")) {
		t.Fatalf("reply is no signedData holding the certificate: %v %v", err, ci.Type)
	}
	peer := &x509.Certificate{Subject: pkix.Name{CommonName: "device.example"}}
	rq := estRequest("POST", "/.well-known/est/simplereenroll", csr, "", "")
	rq.peer = peer
	if w := ts.serve(rq); w.Code != http.StatusOK || ts.ca.renew.PeerCert != peer || ts.ca.renew.Provisioner != "" || len(ts.ca.renew.CSR) == 0 {
		t.Fatalf("simplereenroll: %d %s, %+v", w.Code, w.Body, ts.ca.renew)
	}
	for path, ct := range map[string]string{"/.well-known/est/cacerts": "application/pkcs7-mime", "/.well-known/est/devices/cacerts": "application/pkcs7-mime",
		"/.well-known/est/devices/csrattrs": "application/csrattrs"} {
		if w := ts.serve(request{method: "GET", path: path}); w.Code != http.StatusOK || w.Header().Get("Content-Type") != ct {
			t.Errorf("%s: %d %q", path, w.Code, w.Header().Get("Content-Type"))
		}
	}
	if w := ts.serve(request{method: "GET", path: "/.well-known/est/csrattrs"}); w.Code != http.StatusNoContent {
		t.Errorf("csrattrs without a label: %d", w.Code)
	}
}

// What EST refuses, each a JSON error: no credentials (401 naming the
// realm), another media type, a body that is not base64, one too large;
// and "not now" is 202 with Retry-After.
func TestESTRefusals(t *testing.T) {
	ts := newTestServer(t)
	csr := base64.StdEncoding.EncodeToString([]byte("csr-der"))
	cases := []struct {
		name   string
		rq     request
		status int
		code   string
	}{
		{"no credentials", estRequest("POST", "/.well-known/est/simpleenroll", csr, "", ""), 401, "renewal_unauthenticated"},
		{"empty password", estRequest("POST", "/.well-known/est/simpleenroll", csr, "tok1", ""), 401, "renewal_unauthenticated"},
		{"JSON body", func() request {
			r := estRequest("POST", "/.well-known/est/simpleenroll", `{"csr": "x"}`, "tok1", "qcet_x")
			r.header.Set("Content-Type", "application/json")
			return r
		}(), 400, "unsupported_media_type"},
		{"not base64", estRequest("POST", "/.well-known/est/simpleenroll", "%%%", "tok1", "qcet_x"), 400, "bad_request"},
		{"empty", estRequest("POST", "/.well-known/est/simpleenroll", "", "tok1", "qcet_x"), 400, "bad_request"},
		{"too large", estRequest("POST", "/.well-known/est/simpleenroll", strings.Repeat("A", maxESTBody+4), "tok1", "qcet_x"), 413, "too_large"},
	}
	for _, c := range cases {
		w := ts.serve(c.rq)
		if w.Code != c.status {
			t.Errorf("%s: %d, want %d: %s", c.name, w.Code, c.status, w.Body)
			continue
		}
		if code, _ := errorReply(t, c.name, w); code != c.code {
			t.Errorf("%s: code %s, want %s", c.name, code, c.code)
		}
		if c.status == 401 && w.Header().Get("WWW-Authenticate") != estRealm {
			t.Errorf("%s: WWW-Authenticate %q", c.name, w.Header().Get("WWW-Authenticate"))
		}
	}
	if ts.ca.called("Sign") {
		t.Error("a refused request reached the authority")
	}

	ts.ca.setFail(cluster.ErrNoLeader)
	w := ts.serve(estRequest("POST", "/.well-known/est/simpleenroll", csr, "tok1", "qcet_x"))
	if w.Code != http.StatusAccepted || w.Header().Get("Retry-After") == "" {
		t.Fatalf("no leader: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	ts.ca.setFail(authority.ErrForbidden)
	if w := ts.serve(request{method: "GET", path: "/.well-known/est/devices/cacerts"}); w.Code != http.StatusForbidden {
		t.Fatalf("a refusal: %d", w.Code)
	}
}

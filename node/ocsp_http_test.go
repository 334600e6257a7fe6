package node

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/authority"
)

// getOCSP sends req with GET (RFC 6960 appendix A) with the given headers.
func getOCSP(t *testing.T, tn *testNode, req []byte, header ...string) (*http.Response, []byte) {
	t.Helper()
	r, err := http.NewRequest("GET", "http://"+tn.node.HTTPAddr()+"/v1/ocsp/"+url.PathEscape(base64.StdEncoding.EncodeToString(req)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// ocspWithNonce is req with a nonce of n random octets in its
// requestExtensions, and the extension's value.
func ocspWithNonce(t *testing.T, req []byte, n int) ([]byte, []byte) {
	t.Helper()
	var in struct {
		TBS struct{ List []asn1.RawValue }
	}
	if _, err := asn1.Unmarshal(req, &in); err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, n)
	rand.Read(nonce)
	v, _ := asn1.Marshal(nonce)
	var out struct {
		TBS struct {
			List []asn1.RawValue
			Ext  []pkix.Extension `asn1:"explicit,tag:2"`
		}
	}
	out.TBS.List = in.TBS.List
	out.TBS.Ext = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}, Value: v}}
	der, err := asn1.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return der, v
}

// Whatever goes wrong, an OCSP client reads an OCSP response: bytes that
// are not a request get malformedRequest (400, 413 for a body too large),
// never JSON; a certificate not issued here gets unauthorized with 200.
func TestOCSPErrorsAreOCSPResponses(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	h := c.enrollHolder(n, "errors.example")
	good, err := ocsp.CreateRequest(h.cert, h.chain[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	long, _ := ocspWithNonce(t, good, authority.MaxOCSPNonce+1)
	base := "http://" + n.node.HTTPAddr() + "/v1/ocsp"
	post := func(body []byte) func() (*http.Response, error) {
		return func() (*http.Response, error) {
			return http.Post(base, "application/ocsp-request", bytes.NewReader(body))
		}
	}
	get := func(path string) func() (*http.Response, error) {
		return func() (*http.Response, error) { return http.Get(base + "/" + path) }
	}
	for _, tc := range []struct {
		name   string
		do     func() (*http.Response, error)
		status int
	}{
		{"GET not base64", get("not%20base64!"), http.StatusBadRequest},
		{"GET base64, not DER", get(base64.StdEncoding.EncodeToString([]byte("garbage"))), http.StatusBadRequest},
		{"GET empty", get(""), http.StatusBadRequest},
		{"POST not DER", post([]byte("garbage")), http.StatusBadRequest},
		{"POST empty", post(nil), http.StatusBadRequest},
		{"POST too large", post(make([]byte, 64<<10)), http.StatusRequestEntityTooLarge},
		{"POST nonce too long", post(long), http.StatusBadRequest},
	} {
		resp, err := tc.do()
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/ocsp-response" ||
			!bytes.Equal(body, ocsp.MalformedRequestErrorResponse) {
			t.Errorf("%s: %d %q %q", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	never, _ := ocsp.CreateRequest(&x509.Certificate{SerialNumber: big.NewInt(424242)}, h.chain[0], nil)
	resp, body := postOCSP(t, n, never)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/ocsp-response" ||
		!bytes.Equal(body, ocsp.UnauthorizedErrorResponse) {
		t.Errorf("not issued here: %d %q %x", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

var maxAge = regexp.MustCompile(`^max-age=(\d+), public, no-transform, must-revalidate$`)

// RFC 5019 6.2: an answer to GET says how long caches may keep it, never
// past its nextUpdate, and how to revalidate it (304 when unchanged). An
// answer echoing a nonce is that request's alone: no cache keeps it.
func TestOCSPGetIsCacheable(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	h := c.enrollHolder(n, "cache.example")
	req, err := ocsp.CreateRequest(h.cert, h.chain[0], &ocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	resp, der := getOCSP(t, n, req)
	r, err := ocsp.ParseResponseForCert(der, h.cert, h.chain[0])
	if resp.StatusCode != http.StatusOK || err != nil || r.Status != ocsp.Good {
		t.Fatalf("GET: %d %v", resp.StatusCode, err)
	}
	hd := resp.Header
	m := maxAge.FindStringSubmatch(hd.Get("Cache-Control"))
	date, _ := http.ParseTime(hd.Get("Date"))
	expires, _ := http.ParseTime(hd.Get("Expires"))
	modified, _ := http.ParseTime(hd.Get("Last-Modified"))
	if m == nil || !expires.Equal(r.NextUpdate) || !modified.Equal(r.ThisUpdate) || hd.Get("ETag") == "" {
		t.Fatalf("headers %v; thisUpdate %s, nextUpdate %s", hd, r.ThisUpdate, r.NextUpdate)
	}
	if age, _ := strconv.Atoi(m[1]); age <= 0 || date.Add(time.Duration(age)*time.Second).After(r.NextUpdate.Add(time.Second)) {
		t.Errorf("max-age %d at %s is past nextUpdate %s", age, date, r.NextUpdate)
	}

	for _, cond := range [][]string{{"If-None-Match", hd.Get("ETag")}, {"If-Modified-Since", hd.Get("Last-Modified")}} {
		resp, body := getOCSP(t, n, req, cond...)
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("ETag") != hd.Get("ETag") {
			t.Errorf("%s: %d, %d bytes, ETag %q", cond[0], resp.StatusCode, len(body), resp.Header.Get("ETag"))
		}
	}
	if resp, body := getOCSP(t, n, req, "If-None-Match", `"other"`); resp.StatusCode != http.StatusOK || !bytes.Equal(body, der) {
		t.Errorf("another ETag: %d", resp.StatusCode)
	}

	// With a nonce, GET and POST: echoed, and no-store.
	nonced, v := ocspWithNonce(t, req, 32)
	for method, do := range map[string]func() (*http.Response, []byte){
		"GET":  func() (*http.Response, []byte) { return getOCSP(t, n, nonced) },
		"POST": func() (*http.Response, []byte) { return postOCSP(t, n, nonced) },
	} {
		resp, body := do()
		info, ok := authority.ReadOCSPResponse(body)
		if resp.StatusCode != http.StatusOK || !ok || !bytes.Equal(info.Nonce, v) ||
			resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("ETag") != "" {
			t.Errorf("%s with a nonce: %d, nonce %x (sent %x), Cache-Control %q, ETag %q", method, resp.StatusCode,
				info.Nonce, v, resp.Header.Get("Cache-Control"), resp.Header.Get("ETag"))
		}
		if _, err := ocsp.ParseResponseForCert(body, h.cert, h.chain[0]); err != nil {
			t.Errorf("%s with a nonce: %v", method, err)
		}
	}
}

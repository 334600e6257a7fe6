package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
	"golang.org/x/time/rate"
)

// withNonce adds requestExtensions to a request x/crypto/ocsp made: a
// nonce extension for each value (the extnValue, as sent).
func withNonce(t testing.TB, req []byte, values ...[]byte) []byte {
	t.Helper()
	var in struct {
		TBS struct{ List []asn1.RawValue }
	}
	if _, err := asn1.Unmarshal(req, &in); err != nil {
		t.Fatal(err)
	}
	var out struct {
		TBS struct {
			List []asn1.RawValue
			Ext  []pkix.Extension `asn1:"explicit,tag:2"`
		}
	}
	out.TBS.List = in.TBS.List
	for _, v := range values {
		out.TBS.Ext = append(out.TBS.Ext, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}, Value: v})
	}
	der, err := asn1.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// nonceValue is a nonce of n random octets as RFC 8954 encodes it.
func nonceValue(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	v, err := asn1.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// responseNonce is the value of the nonce in a response's
// responseExtensions, read here apart from the code under test; nil if
// there is none.
func responseNonce(t *testing.T, der []byte) []byte {
	t.Helper()
	var resp struct {
		Status   asn1.Enumerated
		Response struct {
			Type     asn1.ObjectIdentifier
			Response []byte
		} `asn1:"explicit,tag:0"`
	}
	var basic struct {
		TBS struct {
			Version     int `asn1:"optional,explicit,tag:0,default:0"`
			ResponderID asn1.RawValue
			ProducedAt  time.Time `asn1:"generalized"`
			Responses   []asn1.RawValue
			Extensions  []pkix.Extension `asn1:"optional,explicit,tag:1"`
		}
	}
	if _, err := asn1.Unmarshal(der, &resp); err != nil {
		t.Fatalf("response: %v", err)
	}
	if _, err := asn1.Unmarshal(resp.Response.Response, &basic); err != nil {
		t.Fatalf("basic response: %v", err)
	}
	for _, e := range basic.TBS.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}) {
			return e.Value
		}
	}
	return nil
}

// RFC 8954 / RFC 6960 4.4.1: a request's nonce (1 to 32 octets) is
// echoed in the signed response, which is then signed for that request:
// never served from, nor put in, the stored answers. Longer, empty or
// repeated nonces are malformed. Beyond the node's budget for such
// signatures, the stored answer comes without the nonce.
func TestOCSPEchoesTheNonce(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	leaf, issuer := c.issued(t, "nonce.example")
	plain := ocspRequest(t, leaf.SerialNumber, issuer, crypto.SHA256)
	stored, _, err := c.OCSP(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	before := c.signs.total()
	for _, n := range []int{1, 16, 32, 32} {
		v := nonceValue(t, n)
		der, statuses, err := c.OCSP(ctx, withNonce(t, plain, v))
		if err != nil {
			t.Fatalf("%d-octet nonce: %v", n, err)
		}
		if !slices.Equal(statuses, []string{OCSPGood}) {
			t.Fatalf("%d-octet nonce: statuses %v", n, statuses)
		}
		if r, err := ocsp.ParseResponseForCert(der, leaf, issuer); err != nil || r.Status != ocsp.Good {
			t.Fatalf("%d-octet nonce: %v", n, err)
		}
		if got := responseNonce(t, der); !bytes.Equal(got, v) {
			t.Fatalf("%d-octet nonce: echoed %x, sent %x", n, got, v)
		}
	}
	if n := c.signs.total() - before; n != 4 {
		t.Errorf("4 requests with a nonce: %d signatures, want 4 (one each)", n)
	}
	if der, _, err := c.OCSP(ctx, plain); err != nil || !bytes.Equal(der, stored) || responseNonce(t, der) != nil {
		t.Errorf("without a nonce after them: %v, not the stored answer", err)
	}

	// Several certificates, and a revoked one: the nonce too.
	other, _ := c.issued(t, "other.example")
	v := nonceValue(t, 32)
	der, statuses, err := c.OCSP(ctx, withNonce(t, ocspMultiRequest(t, issuer, crypto.SHA256, leaf.SerialNumber, other.SerialNumber), v))
	if err != nil || !bytes.Equal(responseNonce(t, der), v) {
		t.Errorf("several certificates: %v, nonce not echoed", err)
	}
	if !slices.Equal(statuses, []string{OCSPGood, OCSPGood}) {
		t.Errorf("several certificates: statuses %v", statuses)
	}
	if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(leaf.SerialNumber), Reason: "keyCompromise", Admin: c.admin}); err != nil {
		t.Fatal(err)
	}
	der, statuses, err = c.OCSP(ctx, withNonce(t, plain, v))
	if err != nil || !bytes.Equal(responseNonce(t, der), v) {
		t.Fatalf("revoked: %v, nonce not echoed", err)
	}
	if !slices.Equal(statuses, []string{OCSPRevoked}) {
		t.Errorf("revoked: statuses %v", statuses)
	}
	if r, err := ocsp.ParseResponseForCert(der, leaf, issuer); err != nil || r.Status != ocsp.Revoked {
		t.Fatalf("revoked: %v", err)
	}

	for name, req := range map[string][]byte{
		"empty nonce":         withNonce(t, plain, nonceValue(t, 0)),
		"33 octets":           withNonce(t, plain, nonceValue(t, 33)),
		"not an OCTET STRING": withNonce(t, plain, []byte{1, 2, 3, 4, 5, 6, 7, 8}),
		"two nonces":          withNonce(t, plain, v, v),
	} {
		if _, _, err := c.OCSP(ctx, req); !errors.Is(err, ErrOCSPMalformed) {
			t.Errorf("%s: %v, want ErrOCSPMalformed", name, err)
		}
	}

	// Over the node's budget: the stored answer, without the nonce.
	c.ocspFreshSigs = rate.NewLimiter(0, 0)
	revoked, _, err := c.OCSP(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	before = c.signs.total()
	if der, statuses, err := c.OCSP(ctx, withNonce(t, plain, v)); err != nil || !bytes.Equal(der, revoked) || !slices.Equal(statuses, []string{OCSPRevoked}) {
		t.Errorf("over the budget: %v %v, not the stored answer", err, statuses)
	}
	if n := c.signs.total() - before; n != 0 {
		t.Errorf("over the budget: %d signatures", n)
	}
}

// RFC 6960 2.4: thisUpdate is when the status was known to be correct, so
// an answer reporting a revocation never says it was made before it: not
// the answer signed right after the revocation (within the minute answers
// are rounded to), not the one stored, nor one for several certificates.
// The "good" signed before it is never served after it.
func TestOCSPThisUpdateIsNeverBeforeTheRevocation(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	leaf, issuer := c.issued(t, "late.example")
	other, _ := c.issued(t, "bystander.example")
	if r := c.ask(t, leaf, issuer); r.Status != ocsp.Good {
		t.Fatalf("status %d", r.Status)
	}
	// Half a minute into a minute: the rounded time is before the revocation.
	now := c.clock.Now()
	c.clock.Advance(now.Truncate(time.Minute).Add(time.Minute + 30*time.Second).Sub(now))
	if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(leaf.SerialNumber), Reason: "keyCompromise", Admin: c.admin}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, der []byte) {
		t.Helper()
		r, err := ocsp.ParseResponseForCert(der, leaf, issuer)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if r.Status != ocsp.Revoked || r.ThisUpdate.Before(r.RevokedAt) || r.ProducedAt.Before(r.RevokedAt) {
			t.Errorf("%s: status %d, revoked at %s, thisUpdate %s, producedAt %s", what, r.Status, r.RevokedAt, r.ThisUpdate, r.ProducedAt)
		}
	}
	req := ocspRequest(t, leaf.SerialNumber, issuer, crypto.SHA256)
	for _, what := range []string{"signed", "from memory"} {
		der, _, err := c.OCSP(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		check(what, der)
	}
	der, _, err := c.OCSP(ctx, ocspMultiRequest(t, issuer, crypto.SHA256, other.SerialNumber, leaf.SerialNumber))
	if err != nil {
		t.Fatal(err)
	}
	check("several certificates", der)
	c = c.restart(t)
	if der, _, err = c.OCSP(ctx, req); err != nil {
		t.Fatal(err)
	}
	check("from disk", der)
}

// ReadOCSPResponse reads what HTTP caching needs from the answers served:
// times of one or several certificates, the nonce if any; nothing from the
// unsigned error responses.
func TestReadOCSPResponse(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	leaf, issuer := c.issued(t, "read.example")
	other, _ := c.issued(t, "other.example")
	plain := ocspRequest(t, leaf.SerialNumber, issuer, crypto.SHA256)
	v := nonceValue(t, 16)
	for name, req := range map[string][]byte{
		"one":     plain,
		"nonce":   withNonce(t, plain, v),
		"several": ocspMultiRequest(t, issuer, crypto.SHA1, leaf.SerialNumber, other.SerialNumber),
	} {
		der, _, err := c.OCSP(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ocsp.ParseResponseForCert(der, leaf, issuer)
		if err != nil {
			t.Fatal(err)
		}
		info, ok := ReadOCSPResponse(der)
		if !ok || !info.ThisUpdate.Equal(r.ThisUpdate) || !info.NextUpdate.Equal(r.NextUpdate) || !bytes.Equal(info.Nonce, responseNonce(t, der)) {
			t.Errorf("%s: %v %+v, parsed %s %s", name, ok, info, r.ThisUpdate, r.NextUpdate)
		}
		if name == "nonce" && !bytes.Equal(info.Nonce, v) {
			t.Errorf("nonce %x, sent %x", info.Nonce, v)
		}
	}
	for _, der := range [][]byte{ocsp.UnauthorizedErrorResponse, ocsp.TryLaterErrorResponse, ocsp.MalformedRequestErrorResponse, nil, []byte("junk")} {
		if info, ok := ReadOCSPResponse(der); ok {
			t.Errorf("%x: read %+v", der, info)
		}
	}
}

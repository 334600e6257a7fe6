package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"math/big"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/signer/soft"
)

// ocspMultiRequest asks about several serials in one request: the
// requestList entries x/crypto/ocsp writes for each, put in one list.
func ocspMultiRequest(t testing.TB, issuer *x509.Certificate, h crypto.Hash, serials ...*big.Int) []byte {
	t.Helper()
	var reqs [][]byte
	for _, s := range serials {
		reqs = append(reqs, ocspRequest(t, s, issuer, h))
	}
	return joinRequests(t, reqs...)
}

// ocspSerials lists the serials a response answers, in order.
func ocspSerials(t *testing.T, der []byte) []*big.Int {
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
			ResponderID asn1.RawValue
			ProducedAt  time.Time `asn1:"generalized"`
			Responses   []struct {
				CertID struct {
					Alg               asn1.RawValue
					NameHash, KeyHash []byte
					Serial            *big.Int
				}
			}
		}
	}
	if _, err := asn1.Unmarshal(der, &resp); err != nil {
		t.Fatalf("response: %v", err)
	}
	if _, err := asn1.Unmarshal(resp.Response.Response, &basic); err != nil {
		t.Fatalf("basic response: %v", err)
	}
	var serials []*big.Int
	for _, r := range basic.TBS.Responses {
		serials = append(serials, r.CertID.Serial)
	}
	return serials
}

// A request for several certificates gets a SingleResponse for each, in
// one signed response (RFC 6960 4.2.2): good, revoked, and "unknown" for a
// serial this issuer never issued.
func TestOCSPAnswersEveryCertificateAsked(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	good, issuer := c.issued(t, "good.example")
	bad, _ := c.issued(t, "bad.example")
	if _, err := c.Revoke(ctx, RevokeRequest{Serial: SerialHex(bad.SerialNumber), Reason: "keyCompromise", Admin: c.admin}); err != nil {
		t.Fatal(err)
	}
	never := &x509.Certificate{SerialNumber: new(big.Int).Add(good.SerialNumber, big.NewInt(1))}
	asked := []*x509.Certificate{good, bad, never}
	want := []int{ocsp.Good, ocsp.Revoked, ocsp.Unknown}

	check := func(der []byte, signer *x509.Certificate) {
		t.Helper()
		serials := ocspSerials(t, der)
		if len(serials) != len(asked) {
			t.Fatalf("response holds %d single responses, want %d", len(serials), len(asked))
		}
		for i, cert := range asked {
			if serials[i].Cmp(cert.SerialNumber) != 0 {
				t.Errorf("single response %d is for serial %x, want %x (the order asked)", i, serials[i], cert.SerialNumber)
			}
			r, err := ocsp.ParseResponseForCert(der, cert, issuer)
			if err != nil {
				t.Fatalf("certificate %d: %v", i, err)
			}
			if r.Status != want[i] || r.NextUpdate.Sub(r.ThisUpdate) != ocspValidity {
				t.Errorf("certificate %d: status %d (want %d), %s to %s", i, r.Status, want[i], r.ThisUpdate, r.NextUpdate)
			}
			if err := r.CheckSignatureFrom(signer); err != nil {
				t.Errorf("certificate %d: not signed by %s: %v", i, signer.Subject, err)
			}
			if i == 1 && (r.RevocationReason != ocsp.KeyCompromise || r.RevokedAt.IsZero()) {
				t.Errorf("revoked: reason %d at %s", r.RevocationReason, r.RevokedAt)
			}
		}
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		der, statuses, err := c.OCSP(ctx, ocspMultiRequest(t, issuer, h, good.SerialNumber, bad.SerialNumber, never.SerialNumber))
		if err != nil {
			t.Fatal(err)
		}
		check(der, issuer)
		if !slices.Equal(statuses, []string{OCSPGood, OCSPRevoked, OCSPUnknown}) {
			t.Errorf("statuses for metrics %v, want good, revoked, unknown", statuses)
		}
	}

	// With a delegated responder, its key signs and its certificate is in
	// the response.
	rc := mustParse(c.setResponder(t).Certs[0].DER)
	der, _, err := c.OCSP(ctx, ocspMultiRequest(t, issuer, crypto.SHA256, good.SerialNumber, bad.SerialNumber, never.SerialNumber))
	if err != nil {
		t.Fatal(err)
	}
	check(der, rc)
	if r, _ := ocsp.ParseResponseForCert(der, good, issuer); r == nil || r.Certificate == nil || !r.Certificate.Equal(rc) {
		t.Error("delegated answer does not carry the responder certificate")
	}
}

// Requests that cannot be answered in one response: beyond the limit or
// empty (malformedRequest), naming an issuer this cluster does not run, or
// only serials never issued (unauthorized, unsigned).
func TestOCSPMultiRefusals(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	leaf, issuer := c.issued(t, "one.example")

	serials := []*big.Int{leaf.SerialNumber} // and serials never issued
	for i := range MaxOCSPCertificates {
		serials = append(serials, big.NewInt(int64(i+1)))
	}
	der, _, err := c.OCSP(ctx, ocspMultiRequest(t, issuer, crypto.SHA256, serials[:MaxOCSPCertificates]...))
	if err != nil || len(ocspSerials(t, der)) != MaxOCSPCertificates {
		t.Fatalf("%d certificates (the limit): %v", MaxOCSPCertificates, err)
	}
	if _, _, err := c.OCSP(ctx, ocspMultiRequest(t, issuer, crypto.SHA256, serials...)); !errors.Is(err, ErrOCSPMalformed) || !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("%d certificates: %v, want ErrOCSPMalformed", len(serials), err)
	}
	if _, _, err := c.OCSP(ctx, ocspMultiRequest(t, issuer, crypto.SHA256)); !errors.Is(err, ErrOCSPMalformed) {
		t.Errorf("no certificate: %v, want ErrOCSPMalformed", err)
	}
	if _, _, err := c.OCSP(ctx, ocspMultiRequest(t, issuer, crypto.SHA256, leaf.SerialNumber, big.NewInt(7), leaf.SerialNumber)); !errors.Is(err, ErrOCSPMalformed) {
		t.Errorf("a certificate asked about twice: %v, want ErrOCSPMalformed", err)
	}

	_, otherKey, err := soft.Generate(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := CreateRoot(otherKey, "Somebody Else", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ours := ocspMultiRequest(t, issuer, crypto.SHA256, leaf.SerialNumber)
	theirs := ocspMultiRequest(t, other, crypto.SHA256, leaf.SerialNumber)
	mixed := joinRequests(t, ours, theirs)
	before := c.signs.total()
	unissued := ocspMultiRequest(t, issuer, crypto.SHA256, big.NewInt(1), big.NewInt(2))
	for name, req := range map[string][]byte{"a foreign issuer among ours": mixed, "only serials never issued": unissued} {
		der, _, err := c.OCSP(ctx, req)
		if err != nil || !bytes.Equal(der, ocsp.UnauthorizedErrorResponse) {
			t.Errorf("%s: %v, %d bytes, want unauthorized", name, err, len(der))
		}
	}
	if n := c.signs.total() - before; n != 0 {
		t.Errorf("unauthorized answers made %d signatures", n)
	}
}

// joinRequests puts the entries of several requests in one.
func joinRequests(t testing.TB, reqs ...[]byte) []byte {
	t.Helper()
	type req struct {
		TBS struct{ List []asn1.RawValue }
	}
	var all req
	for _, b := range reqs {
		var one req
		if _, err := asn1.Unmarshal(b, &one); err != nil {
			t.Fatal(err)
		}
		all.TBS.List = append(all.TBS.List, one.TBS.List...)
	}
	der, err := asn1.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// The parser reads what x/crypto/ocsp reads (it replaces it), and every
// entry: a version, a requestor name and extensions are tolerated.
func TestParseOCSPRequest(t *testing.T) {
	c := newTestCA(t)
	leaf, issuer := c.issued(t, "parse.example")
	one := ocspRequest(t, leaf.SerialNumber, issuer, crypto.SHA1)
	entries, _, err := parseOCSPRequest(one)
	if err != nil || len(entries) != 1 {
		t.Fatalf("one certificate: %v, %d entries", err, len(entries))
	}
	x, _ := ocsp.ParseRequest(one)
	if got := entries[0].req; got.HashAlgorithm != x.HashAlgorithm || got.SerialNumber.Cmp(x.SerialNumber) != 0 ||
		!bytes.Equal(got.IssuerNameHash, x.IssuerNameHash) || !bytes.Equal(got.IssuerKeyHash, x.IssuerKeyHash) {
		t.Errorf("parsed %+v, x/crypto %+v", got, x)
	}

	// Everything optional present: version, requestorName, a nonce in
	// requestExtensions and an extension on each entry.
	var plain struct {
		TBS struct {
			List []struct{ CertID asn1.RawValue }
		}
	}
	if _, err := asn1.Unmarshal(one, &plain); err != nil {
		t.Fatal(err)
	}
	certID := plain.TBS.List[0].CertID
	type entry struct {
		CertID asn1.RawValue
		Ext    []asn1.RawValue `asn1:"explicit,tag:0"`
	}
	type tbs struct {
		Version   int `asn1:"explicit,tag:0"`
		Requestor asn1.RawValue
		List      []entry
		Ext       []asn1.RawValue `asn1:"explicit,tag:2"`
	}
	nonce := asn1.RawValue{FullBytes: mustMarshal(t, struct {
		ID    asn1.ObjectIdentifier
		Value []byte
	}{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}, []byte{4, 2, 1, 2}})}
	full := mustMarshal(t, struct{ TBS tbs }{tbs{
		// [1] EXPLICIT GeneralName, a directoryName [4]; encoding/asn1
		// does not add the explicit tag around a RawValue itself.
		Requestor: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: mustMarshal(t,
			asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: issuer.RawSubject})},
		List: []entry{{certID, []asn1.RawValue{nonce}}, {certID, []asn1.RawValue{nonce}}},
		Ext:  []asn1.RawValue{nonce},
	}})
	entries, n, err := parseOCSPRequest(full)
	if err != nil || len(entries) != 2 || !bytes.Equal(entries[1].certID, certID.FullBytes) {
		t.Fatalf("request with every optional field: %v, %d entries", err, len(entries))
	}
	if n == nil || !bytes.Equal(n.Value, []byte{4, 2, 1, 2}) || n.Critical {
		t.Fatalf("nonce %+v", n)
	}

	for name, b := range map[string][]byte{
		"trailing data": append(append([]byte{}, one...), 0),
		"not DER":       []byte("garbage"),
		"serial 0":      ocspMultiRequest(t, issuer, crypto.SHA256, leaf.SerialNumber, big.NewInt(0)),
	} {
		if _, _, err := parseOCSPRequest(b); !errors.Is(err, ErrInvalidRequest) || errors.Is(err, ErrOCSPMalformed) {
			t.Errorf("%s: %v, want ErrInvalidRequest", name, err)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Answers for several certificates are signed for each request, so the
// node has a budget for them: beyond it, tryLater (ErrUnavailable) without
// a signature, while one certificate's answer is still served. (Before,
// anyone could make a node sign one for every request.)
func TestOCSPMultiSignaturesAreBounded(t *testing.T) {
	c := newTestCA(t)
	ctx := context.Background()
	leaf, issuer := c.issued(t, "budget.example")
	multi := ocspMultiRequest(t, issuer, crypto.SHA256, leaf.SerialNumber, big.NewInt(1))
	single := ocspMultiRequest(t, issuer, crypto.SHA256, leaf.SerialNumber)
	if _, _, err := c.OCSP(ctx, single); err != nil {
		t.Fatal(err)
	}
	before := c.signs.total()
	answered, refused := 0, 0
	for range 4 * OCSPFreshSignaturesPerSecond {
		_, _, err := c.OCSP(ctx, multi)
		switch {
		case err == nil:
			answered++
		case errors.Is(err, ErrUnavailable):
			refused++
		default:
			t.Fatal(err)
		}
	}
	// The burst (twice the rate), plus what refilled while asking.
	if refused == 0 || answered > 3*OCSPFreshSignaturesPerSecond {
		t.Errorf("%d answered, %d refused of %d asked at once", answered, refused, 4*OCSPFreshSignaturesPerSecond)
	}
	if n := c.signs.total() - before; n != answered {
		t.Errorf("%d signatures for %d answers", n, answered)
	}
	if _, _, err := c.OCSP(ctx, single); err != nil {
		t.Errorf("one certificate's answer once the budget is spent: %v", err)
	}
}

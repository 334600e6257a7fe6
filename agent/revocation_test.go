package agent

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Only an OCSP answer signed for the certificate's issuer, by the issuer
// or a responder it certified for OCSP signing, stops the agent; no
// answer, an unsigned one, or one signed by any other certificate of the
// issuer (another device's) is logged and changes nothing.
func TestRevocationCheckBelievesOnlySignedAnswers(t *testing.T) {
	issuerKey := newKey(t)
	issuer, err := x509.ParseCertificate(selfSigned(t, issuerKey, "issuer.example", time.Now().Add(-time.Hour), time.Now().Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	signedBy := func(eku ...x509.ExtKeyUsage) (*x509.Certificate, crypto.Signer) {
		k := newKey(t)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "x"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: eku}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, k.Public(), issuerKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, k
	}
	leaf, _ := signedBy(x509.ExtKeyUsageClientAuth)
	otherDevice, otherKey := signedBy(x509.ExtKeyUsageClientAuth)
	responder, responderKey := signedBy(x509.ExtKeyUsageOCSPSigning)
	answer := func(status int, signer *x509.Certificate, key crypto.Signer) []byte {
		b, err := ocsp.CreateResponse(issuer, signer, ocsp.Response{Status: status, SerialNumber: leaf.SerialNumber,
			ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour), RevokedAt: time.Now(), RevocationReason: ocsp.KeyCompromise,
			Certificate: signerIfDelegated(signer, issuer)}, key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name        string
		body        []byte // nil: the responder is down
		stops       bool
		wantOutcome string
	}{
		{"responder down", nil, false, RevocationUnknown},
		{"unsigned tryLater", ocsp.TryLaterErrorResponse, false, RevocationUnknown},
		{"unsigned unauthorized", ocsp.UnauthorizedErrorResponse, false, RevocationUnknown},
		{"revoked, signed by another device's certificate", answer(ocsp.Revoked, otherDevice, otherKey), false, RevocationUnknown},
		{"good, signed by the issuer", answer(ocsp.Good, issuer, issuerKey), false, RevocationGood},
		{"revoked, signed by the issuer", answer(ocsp.Revoked, issuer, issuerKey), true, RevocationRevoked},
		{"revoked, signed by a delegated responder", answer(ocsp.Revoked, responder, responderKey), true, RevocationRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/ocsp-response")
				w.Write(tt.body)
			}))
			url := srv.URL + "/v1/ocsp"
			if tt.body == nil {
				srv.Close()
			} else {
				defer srv.Close()
			}
			l := *leaf
			l.OCSPServer = []string{url}
			a := &Agent{cfg: Config{Timeout: 5 * time.Second}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
				bundle: &Bundle{}, id: &identity{cert: &l, chain: []*x509.Certificate{issuer}}}
			err := a.checkRevocation(context.Background())
			if stopped := errors.Is(err, ErrStopped); stopped != tt.stops || (!tt.stops && err != nil) {
				t.Fatalf("check: %v; want stop %v", err, tt.stops)
			}
			if tt.stops && !strings.Contains(err.Error(), "keyCompromise") {
				t.Errorf("the stop does not say why: %v", err)
			}
			if a.st.Revocation != tt.wantOutcome || a.st.RevocationChecked.IsZero() {
				t.Errorf("state: %q at %v, want %q", a.st.Revocation, a.st.RevocationChecked, tt.wantOutcome)
			}
		})
	}
}

// signerIfDelegated is the certificate an answer carries: none when the
// issuer signs it itself.
func signerIfDelegated(signer, issuer *x509.Certificate) *x509.Certificate {
	if signer.Equal(issuer) {
		return nil
	}
	return signer
}

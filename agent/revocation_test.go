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
	signedFor := func(from, to time.Time, eku ...x509.ExtKeyUsage) (*x509.Certificate, crypto.Signer) {
		k := newKey(t)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "x"},
			NotBefore: from, NotAfter: to, ExtKeyUsage: eku}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, k.Public(), issuerKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, k
	}
	signedBy := func(eku ...x509.ExtKeyUsage) (*x509.Certificate, crypto.Signer) {
		return signedFor(time.Now().Add(-time.Hour), time.Now().Add(time.Hour), eku...)
	}
	leaf, _ := signedBy(x509.ExtKeyUsageClientAuth)
	otherDevice, otherKey := signedBy(x509.ExtKeyUsageClientAuth)
	responder, responderKey := signedBy(x509.ExtKeyUsageOCSPSigning)
	expired, expiredKey := signedFor(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), x509.ExtKeyUsageOCSPSigning)
	notYet, notYetKey := signedFor(time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour), x509.ExtKeyUsageOCSPSigning)
	answerAt := func(status int, signer *x509.Certificate, key crypto.Signer, this, next time.Time) []byte {
		b, err := ocsp.CreateResponse(issuer, signer, ocsp.Response{Status: status, SerialNumber: leaf.SerialNumber,
			ThisUpdate: this, NextUpdate: next, RevokedAt: this, RevocationReason: ocsp.KeyCompromise,
			Certificate: signerIfDelegated(signer, issuer)}, key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	answer := func(status int, signer *x509.Certificate, key crypto.Signer) []byte {
		return answerAt(status, signer, key, time.Now(), time.Now().Add(time.Hour))
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
		// A responder's key outlives its certificate on some disk: once
		// the certificate has expired (or before it starts), what the key
		// signs is not the issuer's word.
		{"revoked, signed by an expired delegated responder", answer(ocsp.Revoked, expired, expiredKey), false, RevocationUnknown},
		{"revoked, signed by a delegated responder not valid yet", answer(ocsp.Revoked, notYet, notYetKey), false, RevocationUnknown},
		// An old good answer replayed after its next update says nothing
		// of now.
		{"good, past its next update", answerAt(ocsp.Good, issuer, issuerKey, time.Now().Add(-3*time.Hour), time.Now().Add(-2*time.Hour)), false, RevocationUnknown},
		{"revoked, not produced yet", answerAt(ocsp.Revoked, issuer, issuerKey, time.Now().Add(2*time.Hour), time.Now().Add(3*time.Hour)), false, RevocationUnknown},
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
	// A reload hook that keeps failing does not keep the agent from
	// learning that its certificate was revoked.
	t.Run("revoked, while the -exec hook keeps failing", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/ocsp-response")
			w.Write(answer(ocsp.Revoked, issuer, issuerKey))
		}))
		defer srv.Close()
		l := *leaf
		l.OCSPServer = []string{srv.URL + "/v1/ocsp"}
		a := &Agent{cfg: Config{Timeout: 5 * time.Second, Exec: "exit 3", CheckInterval: time.Hour},
			log: slog.New(slog.NewTextHandler(io.Discard, nil)), roots: x509.NewCertPool(),
			bundle: &Bundle{}, id: &identity{cert: &l, chain: []*x509.Certificate{issuer}}}
		a.st.RenewAt, a.st.RootsCheck, a.st.HookPending = time.Now().Add(time.Hour), time.Now(), true
		if err := a.step(context.Background()); !errors.Is(err, ErrStopped) {
			t.Fatalf("step: %v; want the revocation to stop the agent", err)
		}
		if !a.st.HookPending {
			t.Error("the failed hook is no longer pending")
		}
	})
}

// signerIfDelegated is the certificate an answer carries: none when the
// issuer signs it itself.
func signerIfDelegated(signer, issuer *x509.Certificate) *x509.Certificate {
	if signer.Equal(issuer) {
		return nil
	}
	return signer
}

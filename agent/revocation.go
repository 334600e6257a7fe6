package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Revocation statuses in the state file.
const (
	RevocationGood    = "good"
	RevocationRevoked = "revoked"
	RevocationUnknown = "unknown" // no signed answer this time
)

// checkRevocation asks OCSP whether the certificate in place is revoked:
// the responders it names (AIA), then the CA's API. Only an answer signed
// for this certificate's issuer counts: a revoked one stops the agent
// (ErrStopped), and no answer at all (unreachable, tryLater, unsigned) is
// logged and changes nothing, since an attacker on the path can cause it.
func (a *Agent) checkRevocation(ctx context.Context) error {
	leaf := a.id.cert
	a.st.RevocationChecked = time.Now()
	r, err := a.askOCSP(ctx, leaf)
	if err != nil {
		a.st.Revocation = RevocationUnknown
		a.log.Warn("revocation not checked: no OCSP answer; carrying on", "serial", a.st.Serial, "err", err)
		return nil
	}
	switch r.Status {
	case ocsp.Revoked:
		a.st.Revocation = RevocationRevoked
		return fmt.Errorf("%w: certificate %s revoked at %s, reason %s (OCSP)", ErrStopped, a.st.Serial,
			r.RevokedAt.UTC().Format(time.RFC3339), reasonName(r.RevocationReason))
	case ocsp.Good:
		a.st.Revocation = RevocationGood
	default:
		a.st.Revocation = RevocationUnknown
		a.log.Warn("OCSP does not know this certificate; carrying on", "serial", a.st.Serial)
	}
	return nil
}

// askOCSP returns the first answer signed for leaf's issuer, trying each
// responder the certificate names, then each CA address.
func (a *Agent) askOCSP(ctx context.Context, leaf *x509.Certificate) (*ocsp.Response, error) {
	if len(a.id.chain) == 0 {
		return nil, errors.New("the certificate file holds no issuing certificate")
	}
	issuer := a.id.chain[0]
	req, err := ocsp.CreateRequest(leaf, issuer, nil)
	if err != nil {
		return nil, err
	}
	urls := slices.Clone(leaf.OCSPServer)
	for _, addr := range a.bundle.Addrs {
		urls = append(urls, strings.TrimSuffix(addr, "/")+"/v1/ocsp")
	}
	// One request's timeout for them all: a check that goes on without an
	// answer must not wait for each unreachable address in turn.
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: a.roots}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var errs []error
	for _, u := range urls {
		r, err := postOCSP(ctx, hc, u, req, leaf, issuer)
		if err == nil {
			return r, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func postOCSP(ctx context.Context, hc *http.Client, url string, req []byte, leaf, issuer *x509.Certificate) (*ocsp.Response, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := hc.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	r, err := ocsp.ParseResponseForCert(body, leaf, issuer)
	if err != nil {
		return nil, fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
	}
	// x/crypto/ocsp takes any certificate the issuer signed as a
	// responder; RFC 6960 4.2.2.2 wants one certified for OCSP signing,
	// or any device of the same issuer could sign "revoked" for another.
	if c := r.Certificate; c != nil && !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
		return nil, errors.New("OCSP answer signed by a certificate not certified for OCSP signing")
	}
	return r, checkOCSPTimes(r, time.Now())
}

// ocspSkew is the clock difference allowed between the agent and the CA.
const ocspSkew = 5 * time.Minute

// checkOCSPTimes refuses an answer signed by a delegated responder outside
// its certificate's validity (its key may outlive the certificate), and
// one that is not current: produced in the future, or past its next
// update (a replayed old answer says nothing of now).
func checkOCSPTimes(r *ocsp.Response, now time.Time) error {
	if c := r.Certificate; c != nil && (now.Add(ocspSkew).Before(c.NotBefore) || now.Add(-ocspSkew).After(c.NotAfter)) {
		return fmt.Errorf("OCSP answer signed by a responder certificate valid only from %s to %s",
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Add(ocspSkew).Before(r.ThisUpdate) {
		return fmt.Errorf("OCSP answer from the future (this update %s)", r.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !r.NextUpdate.IsZero() && now.Add(-ocspSkew).After(r.NextUpdate) {
		return fmt.Errorf("OCSP answer out of date (next update %s)", r.NextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

// reasonName is RFC 5280's name of a CRL reason code.
func reasonName(code int) string {
	names := []string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
		"cessationOfOperation", "certificateHold", "", "removeFromCRL", "privilegeWithdrawn", "aACompromise"}
	if code >= 0 && code < len(names) && names[code] != "" {
		return names[code]
	}
	return fmt.Sprintf("code %d", code)
}

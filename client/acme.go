package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// ACME is a small RFC 8555 client: one account, safe for concurrent use.
// The bench and the fault suite drive quorumca's ACME server with it;
// devices and services use certbot, lego, Caddy or cert-manager.
type ACME struct {
	http *http.Client
	dir  struct {
		NewNonce, NewAccount, NewOrder, RevokeCert string
	}
	key   *ecdsa.PrivateKey
	jwk   []byte // the public key as a JWK
	thumb string // its RFC 7638 thumbprint, base64url
	kid   string

	mu     sync.Mutex
	nonces []string

	// Sent, if set, hears of every signed request and its answer's status
	// (the fault suite replays some).
	Sent func(url string, body []byte, status int)
}

// ACMEError is an ACME problem document.
type ACMEError struct {
	Status int
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

func (e *ACMEError) Error() string { return fmt.Sprintf("acme: %d %s: %s", e.Status, e.Type, e.Detail) }

// ACMEOrder is an order as the server shows it.
type ACMEOrder struct {
	URL            string   `json:"-"`
	Status         string   `json:"status"`
	Authorizations []string `json:"authorizations"`
	Finalize       string   `json:"finalize"`
	Certificate    string   `json:"certificate"`
}

// ACMEAuthz is an authorization with its challenges.
type ACMEAuthz struct {
	Status     string `json:"status"`
	Identifier struct {
		Type, Value string
	} `json:"identifier"`
	Challenges []struct {
		Type   string `json:"type"`
		URL    string `json:"url"`
		Token  string `json:"token"`
		Status string `json:"status"`
	} `json:"challenges"`
}

// NewACME reads the directory at dirURL and makes a new account key.
func NewACME(ctx context.Context, hc *http.Client, dirURL string) (*ACME, error) {
	a := &ACME{http: hc}
	resp, err := a.get(ctx, dirURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var d map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return nil, fmt.Errorf("acme directory: %w", err)
	}
	str := func(k string) string { s, _ := d[k].(string); return s }
	a.dir.NewNonce, a.dir.NewAccount, a.dir.NewOrder, a.dir.RevokeCert = str("newNonce"), str("newAccount"), str("newOrder"), str("revokeCert")
	if a.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	pub := &jose.JSONWebKey{Key: a.key.Public()}
	if a.jwk, err = pub.MarshalJSON(); err != nil {
		return nil, err
	}
	t, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	a.thumb = base64.RawURLEncoding.EncodeToString(t)
	return a, nil
}

func (a *ACME) get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, problemOf(resp)
	}
	return resp, nil
}

// nonce takes a nonce from the pool, or asks for one.
func (a *ACME) nonce(ctx context.Context) (string, error) {
	a.mu.Lock()
	if n := len(a.nonces); n > 0 {
		v := a.nonces[n-1]
		a.nonces = a.nonces[:n-1]
		a.mu.Unlock()
		return v, nil
	}
	a.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, a.dir.NewNonce, nil)
	if err != nil {
		return "", err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if v := resp.Header.Get("Replay-Nonce"); v != "" {
		return v, nil
	}
	return "", errors.New("acme: new-nonce gave no nonce")
}

func (a *ACME) keep(resp *http.Response) {
	if v := resp.Header.Get("Replay-Nonce"); v != "" {
		a.mu.Lock()
		if len(a.nonces) < 64 {
			a.nonces = append(a.nonces, v)
		}
		a.mu.Unlock()
	}
}

// post sends a JWS-signed request; payload nil is POST-as-GET. A badNonce
// is retried with the answer's fresh nonce, as RFC 8555 section 6.5 says.
func (a *ACME) post(ctx context.Context, url string, payload any) (*http.Response, error) {
	var body []byte
	if payload != nil {
		var err error
		if body, err = json.Marshal(payload); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		nonce, err := a.nonce(ctx)
		if err != nil {
			return nil, err
		}
		flat, err := a.sign(url, nonce, body)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(flat))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/jose+json")
		resp, err := a.http.Do(req)
		if err != nil {
			return nil, err
		}
		if a.Sent != nil {
			a.Sent(url, flat, resp.StatusCode)
		}
		a.keep(resp)
		if resp.StatusCode < 300 {
			return resp, nil
		}
		perr := problemOf(resp)
		resp.Body.Close()
		if perr.Type == "urn:ietf:params:acme:error:badNonce" && attempt < 5 {
			continue
		}
		return nil, perr
	}
}

// jwsHeader is the protected header of a request: the account's URL, or
// the key itself before there is an account.
type jwsHeader struct {
	Alg   string          `json:"alg"`
	JWK   json.RawMessage `json:"jwk,omitempty"`
	KID   string          `json:"kid,omitempty"`
	Nonce string          `json:"nonce"`
	URL   string          `json:"url"`
}

// sign makes the flattened JWS of a request (RFC 8555 section 6.2), with
// "payload": "" for a POST-as-GET. ES256 by hand: the bench signs five
// times per order, and go-jose's general signer cost twice the signature.
func (a *ACME) sign(url, nonce string, payload []byte) ([]byte, error) {
	h := jwsHeader{Alg: "ES256", KID: a.kid, Nonce: nonce, URL: url}
	if a.kid == "" {
		h.JWK = a.jwk
	}
	hb, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, a.key, digest[:])
	if err != nil {
		return nil, err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	protected, payload64, _ := strings.Cut(input, ".")
	return json.Marshal(map[string]string{"protected": protected, "payload": payload64, "signature": base64.RawURLEncoding.EncodeToString(sig)})
}

func problemOf(resp *http.Response) *ACMEError {
	e := &ACMEError{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, e) != nil || e.Type == "" {
		e.Detail = string(b)
	}
	return e
}

func (a *ACME) postJSON(ctx context.Context, url string, payload, out any) (*http.Response, error) {
	resp, err := a.post(ctx, url, payload)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return nil, fmt.Errorf("acme %s: %w", url, err)
		}
	}
	return resp, nil
}

// Register creates the account.
func (a *ACME) Register(ctx context.Context) error {
	resp, err := a.postJSON(ctx, a.dir.NewAccount, map[string]any{"termsOfServiceAgreed": true}, nil)
	if err != nil {
		return err
	}
	a.kid = resp.Header.Get("Location")
	if a.kid == "" {
		return errors.New("acme: new account without a Location")
	}
	return nil
}

// AccountURL is the account's URL (its kid), once registered.
func (a *ACME) AccountURL() string { return a.kid }

// KeyAuthorization is what answers a challenge token for this account.
func (a *ACME) KeyAuthorization(token string) string { return token + "." + a.thumb }

// NewOrder orders a certificate for identifiers ("dns" or "ip", value).
func (a *ACME) NewOrder(ctx context.Context, ids [][2]string) (*ACMEOrder, error) {
	var list []map[string]string
	for _, id := range ids {
		list = append(list, map[string]string{"type": id[0], "value": id[1]})
	}
	var o ACMEOrder
	resp, err := a.postJSON(ctx, a.dir.NewOrder, map[string]any{"identifiers": list}, &o)
	if err != nil {
		return nil, err
	}
	o.URL = resp.Header.Get("Location")
	return &o, nil
}

// Authz reads an authorization.
func (a *ACME) Authz(ctx context.Context, url string) (*ACMEAuthz, error) {
	var z ACMEAuthz
	_, err := a.postJSON(ctx, url, nil, &z)
	return &z, err
}

// Respond tells the server a challenge is ready to be validated, and
// returns the challenge's status then.
func (a *ACME) Respond(ctx context.Context, url string) (string, error) {
	var c struct {
		Status string `json:"status"`
	}
	_, err := a.postJSON(ctx, url, struct{}{}, &c)
	return c.Status, err
}

// Order reads an order.
func (a *ACME) Order(ctx context.Context, url string) (*ACMEOrder, error) {
	var o ACMEOrder
	_, err := a.postJSON(ctx, url, nil, &o)
	o.URL = url
	return &o, err
}

// Finalize sends the CSR (DER) of a ready order.
func (a *ACME) Finalize(ctx context.Context, o *ACMEOrder, csr []byte) (*ACMEOrder, error) {
	var out ACMEOrder
	_, err := a.postJSON(ctx, o.Finalize, map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)}, &out)
	out.URL = o.URL
	return &out, err
}

// Certificate downloads an issued certificate's PEM chain.
func (a *ACME) Certificate(ctx context.Context, url string) ([]byte, error) {
	resp, err := a.post(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// Revoke revokes a certificate (DER) this account ordered.
func (a *ACME) Revoke(ctx context.Context, der []byte) error {
	resp, err := a.post(ctx, a.dir.RevokeCert, map[string]string{"certificate": base64.RawURLEncoding.EncodeToString(der)})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// HTTP01 answers http-01 challenges: a handler for
// /.well-known/acme-challenge/ that serves what Set put there.
type HTTP01 struct{ m sync.Map }

func (h *HTTP01) Set(token, keyAuth string) { h.m.Store(token, keyAuth) }
func (h *HTTP01) Delete(token string)       { h.m.Delete(token) }

func (h *HTTP01) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const prefix = "/.well-known/acme-challenge/"
	if len(r.URL.Path) <= len(prefix) || r.URL.Path[:len(prefix)] != prefix {
		http.NotFound(w, r)
		return
	}
	v, ok := h.m.Load(r.URL.Path[len(prefix):])
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write([]byte(v.(string)))
}

// Obtain runs a whole order for ids with http-01 answered by h: order,
// challenges, polling, finalize, download. It returns the PEM chain.
func (a *ACME) Obtain(ctx context.Context, ids [][2]string, csr []byte, h *HTTP01) ([]byte, error) {
	o, err := a.NewOrder(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, zurl := range o.Authorizations {
		if err := a.solveHTTP01(ctx, zurl, h); err != nil {
			return nil, err
		}
	}
	if o, err = a.finalize(ctx, o, csr); err != nil {
		return nil, err
	}
	for o.Status == "processing" || (o.Status == "valid" && o.Certificate == "") {
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
		if o, err = a.Order(ctx, o.URL); err != nil {
			return nil, err
		}
	}
	if o.Status != "valid" {
		return nil, fmt.Errorf("acme: order %s is %s after finalize", o.URL, o.Status)
	}
	return a.Certificate(ctx, o.Certificate)
}

// retriable: a failure after which the request may or may not have taken
// effect (a lost answer, a 5xx): the state is read again and the step
// repeated if it is still due. Finalizing twice yields one certificate.
func retriable(err error) bool {
	var p *ACMEError
	return err != nil && (!errors.As(err, &p) || p.Status >= 500)
}

// finalize finalizes o, and after a lost answer reads the order again:
// valid (the first one took), or ready (finalized again with the same CSR).
func (a *ACME) finalize(ctx context.Context, o *ACMEOrder, csr []byte) (*ACMEOrder, error) {
	out, err := a.Finalize(ctx, o, csr)
	for try := 0; retriable(err) && try < 3; try++ {
		if sleepCtx(ctx, time.Second) != nil {
			break
		}
		var cur *ACMEOrder
		if cur, err = a.Order(ctx, o.URL); err != nil {
			continue
		}
		if cur.Status != "ready" {
			return cur, nil
		}
		out, err = a.Finalize(ctx, o, csr)
	}
	return out, err
}

func (a *ACME) solveHTTP01(ctx context.Context, zurl string, h *HTTP01) error {
	z, err := a.Authz(ctx, zurl)
	if err != nil || z.Status == "valid" {
		return err
	}
	for _, c := range z.Challenges {
		if c.Type != "http-01" {
			continue
		}
		h.Set(c.Token, a.KeyAuthorization(c.Token))
		defer h.Delete(c.Token)
		st, err := a.Respond(ctx, c.URL)
		for try := 0; retriable(err) && try < 3; try++ {
			// The node validating may have died: a challenge left
			// pending is answered again.
			if sleepCtx(ctx, time.Second) != nil {
				break
			}
			if z, err = a.Authz(ctx, zurl); err == nil && z.Status == "pending" {
				st, err = a.Respond(ctx, c.URL)
			} else if err == nil {
				st = z.Status
			}
		}
		for err == nil && st != "valid" && st != "invalid" {
			if err = sleepCtx(ctx, 200*time.Millisecond); err == nil {
				z, err = a.Authz(ctx, zurl)
				st = z.Status
			}
		}
		if err == nil && st != "valid" {
			err = fmt.Errorf("acme: authorization %s is %s", zurl, st)
		}
		return err
	}
	return errors.New("acme: no http-01 challenge offered")
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

package node

// Hostile-client (and hostile-peer) attacks on the ACME server: raw JWS
// requests whose every byte the test controls, against a real three-node
// cluster behind the round-robin balancer of acme_test.go. Every subtest
// asserts the secure behaviour: it fails where the server is vulnerable.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/quorumca/quorumca/acme"
	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/fsm"
)

// ---------------------------------------------------------------------------
// Raw ACME client.

type atkAcct struct {
	key   crypto.Signer
	kid   string // account URL
	thumb string
	prov  string
}

type attacker struct {
	t    *testing.T
	e    *acmeEnv
	hc   *http.Client
	orig string // https://lb

	chal *atkChallengeServer
}

func newAttacker(t *testing.T, e *acmeEnv) *attacker {
	tr := e.c.client.Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	a := &attacker{t: t, e: e, hc: &http.Client{Timeout: 40 * time.Second, Transport: tr}, orig: "https://" + e.lb}
	a.chal = startAtkChallengeServer(t, "127.0.0.1:"+e.httpPort)
	return a
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func pubJWK(key crypto.Signer) json.RawMessage {
	j, err := jose.JSONWebKey{Key: key.Public()}.MarshalJSON()
	if err != nil {
		panic(err)
	}
	return j
}

func thumbOf(pub crypto.PublicKey) string {
	k := jose.JSONWebKey{Key: pub}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		panic(err)
	}
	return b64(tp)
}

func algOf(key crypto.Signer) string {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[k.Curve.Params().Name]
	case ed25519.PrivateKey:
		return "EdDSA"
	case *rsa.PrivateKey:
		return "RS256"
	}
	panic("key type")
}

// rawSig signs input with key as alg would (the header's alg is the
// caller's business).
func rawSig(key crypto.Signer, input []byte) []byte {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		var h []byte
		switch k.Curve.Params().BitSize {
		case 256:
			s := sha256.Sum256(input)
			h = s[:]
		case 384:
			s := sha512.Sum384(input)
			h = s[:]
		default:
			s := sha512.Sum512(input)
			h = s[:]
		}
		r, s, err := ecdsa.Sign(rand.Reader, k, h)
		if err != nil {
			panic(err)
		}
		n := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*n)
		r.FillBytes(out[:n])
		s.FillBytes(out[n:])
		return out
	case ed25519.PrivateKey:
		return ed25519.Sign(k, input)
	case *rsa.PrivateKey:
		h := sha256.Sum256(input)
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, h[:])
		if err != nil {
			panic(err)
		}
		return sig
	}
	panic("key type")
}

// flat is a flattened JSON JWS, every member under the caller's control.
func flat(key crypto.Signer, prot map[string]any, payload []byte) []byte {
	pj, _ := json.Marshal(prot)
	p64 := b64(pj)
	pl64 := b64(payload)
	sig := rawSig(key, []byte(p64+"."+pl64))
	out, _ := json.Marshal(map[string]string{"protected": p64, "payload": pl64, "signature": b64(sig)})
	return out
}

func payloadBytes(p any) []byte {
	switch v := p.(type) {
	case nil:
		return nil
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return b
}

func (a *attacker) target(tn *testNode) string {
	if tn == nil {
		return a.e.lb
	}
	return tn.node.APIAddr()
}

// raw sends body to path at target (host:port) with ctype.
func (a *attacker) rawTry(target, method, path string, body []byte, ctype string) (reply, error) {
	req, err := http.NewRequest(method, "https://"+target+path, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: data}, err
}

func (a *attacker) raw(target, method, path string, body []byte, ctype string) reply {
	a.t.Helper()
	r, err := a.rawTry(target, method, path, body, ctype)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (a *attacker) nonceAt(target, prov string) string {
	a.t.Helper()
	r := a.raw(target, "HEAD", "/acme/"+prov+"/new-nonce", nil, "")
	n := r.header.Get("Replay-Nonce")
	if n == "" {
		a.t.Fatalf("no nonce from %s: %d", target, r.status)
	}
	return n
}

func (a *attacker) path(u string) string { return strings.TrimPrefix(u, a.orig) }
func (a *attacker) url(p string) string  { return a.orig + p }

// prot is the usual protected header for acc (kid) or key (jwk).
func (a *attacker) prot(acc *atkAcct, key crypto.Signer, u, nonce string) map[string]any {
	if acc != nil {
		return map[string]any{"alg": algOf(acc.key), "kid": acc.kid, "url": u, "nonce": nonce}
	}
	return map[string]any{"alg": algOf(key), "jwk": pubJWK(key), "url": u, "nonce": nonce}
}

func (a *attacker) send(target, path string, body []byte) reply {
	a.t.Helper()
	return a.raw(target, "POST", path, body, "application/jose+json")
}

// post is a well-formed request by acc to path (a path or a full URL),
// sent to tn (nil: the balancer), with mut applied to the header.
func (a *attacker) post(tn *testNode, acc *atkAcct, path string, payload any, mut func(map[string]any)) reply {
	a.t.Helper()
	path = a.path(path)
	tg := a.target(tn)
	p := a.prot(acc, nil, a.url(path), a.nonceAt(tg, acc.prov))
	if mut != nil {
		mut(p)
	}
	return a.send(tg, path, flat(acc.key, p, payloadBytes(payload)))
}

func (a *attacker) postJWK(tn *testNode, prov string, key crypto.Signer, path string, payload any, mut func(map[string]any)) reply {
	a.t.Helper()
	tg := a.target(tn)
	p := a.prot(nil, key, a.url(path), a.nonceAt(tg, prov))
	if mut != nil {
		mut(p)
	}
	return a.send(tg, path, flat(key, p, payloadBytes(payload)))
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (a *attacker) newAccount(prov string, key crypto.Signer) *atkAcct {
	a.t.Helper()
	if key == nil {
		key = ecKey(a.t)
	}
	r := a.postJWK(nil, prov, key, "/acme/"+prov+"/new-account", map[string]any{"termsOfServiceAgreed": true}, nil)
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		a.t.Fatalf("new-account: %d %s", r.status, r.body)
	}
	return &atkAcct{key: key, kid: r.header.Get("Location"), thumb: thumbOf(key.Public()), prov: prov}
}

type atkOrder struct {
	URL            string
	Status         string               `json:"status"`
	Identifiers    []fsm.ACMEIdentifier `json:"identifiers"`
	Authorizations []string             `json:"authorizations"`
	Finalize       string               `json:"finalize"`
	Certificate    string               `json:"certificate"`
	NotAfter       string               `json:"notAfter"`
}

type atkAuthz struct {
	Status     string `json:"status"`
	Wildcard   bool   `json:"wildcard"`
	Challenges []struct {
		Type   string           `json:"type"`
		URL    string           `json:"url"`
		Status string           `json:"status"`
		Token  string           `json:"token"`
		Error  *fsm.ACMEProblem `json:"error"`
	} `json:"challenges"`
}

func dnsIDs(names ...string) []fsm.ACMEIdentifier {
	var ids []fsm.ACMEIdentifier
	for _, n := range names {
		typ := "dns"
		if net.ParseIP(n) != nil {
			typ = "ip"
		}
		ids = append(ids, fsm.ACMEIdentifier{Type: typ, Value: n})
	}
	return ids
}

func (a *attacker) newOrder(acc *atkAcct, names ...string) *atkOrder {
	a.t.Helper()
	r := a.post(nil, acc, "/acme/"+acc.prov+"/new-order", map[string]any{"identifiers": dnsIDs(names...)}, nil)
	if r.status != http.StatusCreated {
		a.t.Fatalf("new-order %v: %d %s", names, r.status, r.body)
	}
	var o atkOrder
	r.decode(a.t, &o)
	o.URL = r.header.Get("Location")
	return &o
}

func (a *attacker) order(acc *atkAcct, u string) *atkOrder {
	a.t.Helper()
	r := a.post(nil, acc, u, nil, nil)
	if r.status != http.StatusOK {
		a.t.Fatalf("order: %d %s", r.status, r.body)
	}
	var o atkOrder
	r.decode(a.t, &o)
	o.URL = u
	return &o
}

func (a *attacker) authz(acc *atkAcct, u string) *atkAuthz {
	a.t.Helper()
	r := a.post(nil, acc, u, nil, nil)
	if r.status != http.StatusOK {
		a.t.Fatalf("authz: %d %s", r.status, r.body)
	}
	var z atkAuthz
	r.decode(a.t, &z)
	return &z
}

// waitAuthz polls until the authorization leaves pending (or processing).
func (a *attacker) waitAuthz(acc *atkAcct, u string) *atkAuthz {
	a.t.Helper()
	deadline := time.Now().Add(25 * time.Second)
	for {
		z := a.authz(acc, u)
		if z.Status != fsm.ACMEPending || time.Now().After(deadline) {
			return z
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// challengeOf returns the challenge of type typ.
func (z *atkAuthz) challengeOf(typ string) (url, token, status string) {
	for _, c := range z.Challenges {
		if c.Type == typ {
			return c.URL, c.Token, c.Status
		}
	}
	return "", "", ""
}

// solve answers every authorization of o with http-01.
func (a *attacker) solve(acc *atkAcct, o *atkOrder) {
	a.t.Helper()
	for _, zu := range o.Authorizations {
		z := a.authz(acc, zu)
		if z.Status == fsm.ACMEValid {
			continue
		}
		cu, tok, _ := z.challengeOf("http-01")
		if cu == "" {
			a.t.Fatalf("no http-01 challenge in %s", zu)
		}
		a.chal.answer(tok, acme.KeyAuthorization(tok, acc.thumb))
		if r := a.post(nil, acc, cu, "{}", nil); r.status != http.StatusOK {
			a.t.Fatalf("challenge: %d %s", r.status, r.body)
		}
		if z := a.waitAuthz(acc, zu); z.Status != fsm.ACMEValid {
			a.t.Fatalf("authz %s: %s %+v", zu, z.Status, z.Challenges)
		}
	}
}

func (a *attacker) readyOrder(acc *atkAcct, names ...string) *atkOrder {
	a.t.Helper()
	o := a.newOrder(acc, names...)
	a.solve(acc, o)
	o = a.order(acc, o.URL)
	if o.Status != fsm.ACMEReady {
		a.t.Fatalf("order is %s, want ready", o.Status)
	}
	return o
}

func csrDER(t *testing.T, key crypto.Signer, cn string, names ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	for _, n := range names {
		switch {
		case net.ParseIP(n) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(n))
		case strings.Contains(n, "://"):
			u, _ := url.Parse(n)
			tmpl.URIs = append(tmpl.URIs, u)
		case strings.Contains(n, "@"):
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, n)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (a *attacker) finalize(tn *testNode, acc *atkAcct, o *atkOrder, csr []byte) reply {
	a.t.Helper()
	return a.post(tn, acc, o.Finalize, map[string]string{"csr": b64(csr)}, nil)
}

// issue gets a certificate for names on acc; it returns the order and the
// leaf's DER.
func (a *attacker) issue(acc *atkAcct, key crypto.Signer, names ...string) (*atkOrder, []byte) {
	a.t.Helper()
	o := a.readyOrder(acc, names...)
	if key == nil {
		key = ecKey(a.t)
	}
	r := a.finalize(nil, acc, o, csrDER(a.t, key, "", names...))
	if r.status != http.StatusOK {
		a.t.Fatalf("finalize: %d %s", r.status, r.body)
	}
	o = a.order(acc, o.URL)
	if o.Status != fsm.ACMEValid || o.Certificate == "" {
		a.t.Fatalf("order after finalize: %+v", o)
	}
	cr := a.post(nil, acc, o.Certificate, nil, nil)
	if cr.status != http.StatusOK {
		a.t.Fatalf("cert: %d %s", cr.status, cr.body)
	}
	b, _ := pem.Decode(cr.body)
	if b == nil {
		a.t.Fatalf("cert: no PEM: %s", cr.body)
	}
	return o, b.Bytes
}

// certs lists the provisioner's certificates (admin API).
func (a *attacker) certs(prov string) []apitypes.Cert {
	a.t.Helper()
	r := a.e.c.do(a.e.c.nodes[0], "GET", "/v1/admin/certs?limit=1000&provisioner="+prov, nil, a.e.c.admin)
	if r.status != http.StatusOK {
		a.t.Fatalf("admin certs: %d %s", r.status, r.body)
	}
	var out struct{ Certs []apitypes.Cert }
	r.decode(a.t, &out)
	return out.Certs
}

// problemOf checks r is a 4xx ACME problem document and returns its type
// (without prefix) and detail. It reports (with Errorf) what is not.
func problemOf(t *testing.T, r reply) (string, string) {
	t.Helper()
	if r.status < 400 || r.status >= 500 {
		t.Errorf("want a 4xx refusal, got %d %s", r.status, truncateBody(r.body))
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("refusal content type %q, want application/problem+json (status %d, body %s)", ct, r.status, truncateBody(r.body))
		return "", ""
	}
	var p struct{ Type, Detail string }
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Errorf("problem document does not parse: %s", r.body)
	}
	if !strings.HasPrefix(p.Type, acme.ProblemPrefix) {
		t.Errorf("problem type %q is not an ACME error", p.Type)
	}
	return strings.TrimPrefix(p.Type, acme.ProblemPrefix), p.Detail
}

// refused asserts a 4xx ACME problem, of one of types if any are given.
func refused(t *testing.T, r reply, types ...string) {
	t.Helper()
	typ, _ := problemOf(t, r)
	if len(types) == 0 || typ == "" {
		return
	}
	for _, want := range types {
		if typ == want {
			return
		}
	}
	t.Errorf("problem type %q, want one of %v (status %d, body %s)", typ, types, r.status, truncateBody(r.body))
}

func truncateBody(b []byte) string {
	if len(b) > 400 {
		return string(b[:400]) + "..."
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// Challenge server: answers http-01 for registered tokens, and plays a
// hostile or internal server for others.

type atkChallengeServer struct {
	mu      sync.Mutex
	answers map[string]string
	special map[string]http.HandlerFunc
	hits    map[string]int
}

func startAtkChallengeServer(t *testing.T, addr string) *atkChallengeServer {
	s := &atkChallengeServer{answers: map[string]string{}, special: map[string]http.HandlerFunc{}, hits: map[string]int{}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *atkChallengeServer) answer(token, keyAuth string) {
	s.mu.Lock()
	s.answers[token] = keyAuth
	s.mu.Unlock()
}

func (s *atkChallengeServer) handle(path string, h http.HandlerFunc) {
	s.mu.Lock()
	s.special[path] = h
	s.mu.Unlock()
}

func (s *atkChallengeServer) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func (s *atkChallengeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits[r.URL.Path]++
	h := s.special[r.URL.Path]
	tok, _ := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
	ans, ok := s.answers[tok]
	s.mu.Unlock()
	switch {
	case h != nil:
		h(w, r)
	case ok:
		io.WriteString(w, ans)
	default:
		http.NotFound(w, r)
	}
}

// ---------------------------------------------------------------------------
// The attacks.

func TestACMEAttack(t *testing.T) {
	e := newACMEEnv(t, 3)
	a := newAttacker(t, e)
	nodes := e.c.nodes
	base := "/acme/acme"

	// run is t.Run with the attacker's helpers reporting to the subtest.
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(st *testing.T) {
			old := a.t
			a.t = st
			defer func() { a.t = old }()
			f(st)
		})
	}

	victim := a.newAccount("acme", nil)
	evil := a.newAccount("acme", nil)
	eabProvAcct := func() *atkAcct {
		// An account of the other provisioner, made through EAB.
		r := e.c.do(nodes[0], "POST", "/v1/admin/acme/eab", map[string]any{"provisioner": "acme-eab"}, e.c.admin)
		var k struct{ ID, Key string }
		r.decode(t, &k)
		key := ecKey(t)
		acc := &atkAcct{key: key, thumb: thumbOf(key.Public()), prov: "acme-eab"}
		rr := a.postJWK(nil, "acme-eab", key, "/acme/acme-eab/new-account", map[string]any{"termsOfServiceAgreed": true,
			"externalAccountBinding": json.RawMessage(eabJWS(t, k.ID, k.Key, a.url("/acme/acme-eab/new-account"), pubJWK(key), nil))}, nil)
		if rr.status != http.StatusCreated {
			t.Fatalf("eab account: %d %s", rr.status, rr.body)
		}
		acc.kid = rr.header.Get("Location")
		return acc
	}()

	// The victim's objects: a certificate, a ready order, a pending order.
	victimOrder, victimLeaf := a.issue(victim, nil, "v1.acme.test")
	victimReady := a.readyOrder(victim, "v2.acme.test")
	victimPending := a.newOrder(victim, "v3.acme.test")
	victimPendingAuthz := victimPending.Authorizations[0]
	victimZ := a.authz(victim, victimPendingAuthz)
	victimChall, _, _ := victimZ.challengeOf("http-01")

	// -------------------------------------------------------------- nonces
	run("nonce/replay same node", func(t *testing.T) {
		tg := a.target(nodes[0])
		body := flat(victim.key, a.prot(victim, nil, victim.kid, a.nonceAt(tg, "acme")), nil)
		if r := a.send(tg, a.path(victim.kid), body); r.status != http.StatusOK {
			t.Fatalf("first use: %d %s", r.status, r.body)
		}
		refused(t, a.send(tg, a.path(victim.kid), body), acme.ProbBadNonce)
	})
	run("nonce/replay other node", func(t *testing.T) {
		body := flat(victim.key, a.prot(victim, nil, victim.kid, a.nonceAt(a.target(nodes[0]), "acme")), nil)
		if r := a.send(a.target(nodes[1]), a.path(victim.kid), body); r.status != http.StatusOK {
			t.Fatalf("first use at another node: %d %s", r.status, r.body)
		}
		refused(t, a.send(a.target(nodes[2]), a.path(victim.kid), body), acme.ProbBadNonce)
		refused(t, a.send(a.target(nodes[0]), a.path(victim.kid), body), acme.ProbBadNonce)
		refused(t, a.send(a.target(nil), a.path(victim.kid), body), acme.ProbBadNonce)
	})
	run("nonce/A's nonce at B twice concurrently", func(t *testing.T) {
		for round := range 8 {
			n := a.nonceAt(a.target(nodes[0]), "acme")
			body := flat(victim.key, a.prot(victim, nil, victim.kid, n), nil)
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok := 0
			targets := []string{a.target(nodes[1]), a.target(nodes[1]), a.target(nodes[2]), a.target(nodes[2]), a.target(nodes[0])}
			for _, tg := range targets {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := a.rawTry(tg, "POST", a.path(victim.kid), body, "application/jose+json")
					if err == nil && r.status == http.StatusOK {
						mu.Lock()
						ok++
						mu.Unlock()
					} else if err == nil && r.status >= 500 {
						t.Errorf("round %d: %d %s", round, r.status, r.body)
					}
				}()
			}
			wg.Wait()
			if ok != 1 {
				t.Fatalf("round %d: one nonce was accepted %d times", round, ok)
			}
		}
	})
	forge := func(node string, counter uint64) string {
		b := []byte{byte(len(node))}
		b = append(b, node...)
		b = binary.BigEndian.AppendUint64(b, counter)
		b = append(b, make([]byte, 8)...)
		rand.Read(b[len(b)-8:])
		return b64(b)
	}
	for name, nonce := range map[string]string{
		"another node":          forge(nodes[1].cfg.NodeName, 1),
		"this node":             forge(nodes[0].cfg.NodeName, 1),
		"a node that not exist": forge("ghost-node", 1),
		"an empty node name":    forge("", 1),
		"a node named as a URL": forge("https://169.254.169.254/", 1),
		"huge":                  strings.Repeat("A", 40000),
		"garbage":               "!!not base64!!",
		"empty-ish":             "AA",
		"counter zero":          forge(nodes[0].cfg.NodeName, 0),
	} {
		run("nonce/forged: "+name, func(t *testing.T) {
			r := a.send(a.target(nodes[0]), a.path(victim.kid), flat(victim.key, a.prot(victim, nil, victim.kid, nonce), nil))
			refused(t, r, acme.ProbBadNonce)
		})
	}
	run("nonce/in the unprotected header", func(t *testing.T) {
		tg := a.target(nodes[0])
		p := a.prot(victim, nil, victim.kid, "")
		delete(p, "nonce")
		var m map[string]any
		json.Unmarshal(flat(victim.key, p, nil), &m)
		m["header"] = map[string]any{"nonce": a.nonceAt(tg, "acme")}
		body, _ := json.Marshal(m)
		refused(t, a.send(tg, a.path(victim.kid), body), acme.ProbMalformed, acme.ProbBadNonce)
	})
	run("nonce/none", func(t *testing.T) {
		p := a.prot(victim, nil, victim.kid, "")
		delete(p, "nonce")
		refused(t, a.send(a.target(nodes[0]), a.path(victim.kid), flat(victim.key, p, nil)), acme.ProbBadNonce)
	})
	run("nonce/internal redeem RPC from outside the cluster", func(t *testing.T) {
		n := a.nonceAt(a.target(nodes[0]), "acme")
		body, _ := json.Marshal(map[string]string{"nonce": n})
		for _, tn := range nodes {
			r := a.raw(a.target(tn), "POST", "/v1/internal/x/"+acme.NonceRPC, body, "application/json")
			if r.status != http.StatusForbidden && r.status != http.StatusNotFound && r.status != http.StatusUnauthorized {
				t.Errorf("%s: internal nonce RPC without a node certificate: %d %s", tn.cfg.NodeName, r.status, r.body)
			}
		}
		// The nonce is still good.
		if r := a.send(a.target(nodes[1]), a.path(victim.kid), flat(victim.key, a.prot(victim, nil, victim.kid, n), nil)); r.status != http.StatusOK {
			t.Errorf("nonce burnt by an outsider: %d %s", r.status, r.body)
		}
	})

	// ----------------------------------------------------------------- JWS
	acctPath := a.path(victim.kid)
	sendP := func(t *testing.T, path string, mut func(map[string]any), payload []byte) reply {
		tg := a.target(nodes[1])
		p := a.prot(victim, nil, a.url(path), a.nonceAt(tg, "acme"))
		if mut != nil {
			mut(p)
		}
		return a.send(tg, path, flat(victim.key, p, payload))
	}
	run("jws/url of another path", func(t *testing.T) {
		refused(t, sendP(t, acctPath, func(p map[string]any) { p["url"] = a.url(base + "/new-order") }, nil), acme.ProbUnauthorized)
	})
	run("jws/url of another host", func(t *testing.T) {
		refused(t, sendP(t, acctPath, func(p map[string]any) { p["url"] = "https://evil.example" + acctPath }, nil), acme.ProbUnauthorized)
		refused(t, sendP(t, acctPath, func(p map[string]any) { p["url"] = "http://" + e.lb + acctPath }, nil), acme.ProbUnauthorized)
		refused(t, sendP(t, acctPath, func(p map[string]any) { p["url"] = "https://" + nodes[1].node.APIAddr() + acctPath }, nil), acme.ProbUnauthorized)
	})
	run("jws/url with a changed query", func(t *testing.T) {
		// Signed for .../orders, sent to .../orders?cursor=x.
		tg := a.target(nodes[1])
		p := a.prot(victim, nil, a.url(acctPath+"/orders"), a.nonceAt(tg, "acme"))
		refused(t, a.send(tg, acctPath+"/orders?cursor=zzz", flat(victim.key, p, nil)), acme.ProbUnauthorized)
		p = a.prot(victim, nil, a.url(acctPath+"?x=1"), a.nonceAt(tg, "acme"))
		refused(t, a.send(tg, acctPath, flat(victim.key, p, nil)), acme.ProbUnauthorized)
	})
	run("jws/alg none", func(t *testing.T) {
		tg := a.target(nodes[1])
		p := a.prot(victim, nil, a.url(acctPath), a.nonceAt(tg, "acme"))
		p["alg"] = "none"
		pj, _ := json.Marshal(p)
		body, _ := json.Marshal(map[string]string{"protected": b64(pj), "payload": "", "signature": ""})
		refused(t, a.send(tg, acctPath, body), acme.ProbBadSignatureAlgorithm, acme.ProbMalformed)
	})
	run("jws/HS256 with the public key as secret", func(t *testing.T) {
		tg := a.target(nodes[1])
		p := a.prot(victim, nil, a.url(acctPath), a.nonceAt(tg, "acme"))
		p["alg"] = "HS256"
		pj, _ := json.Marshal(p)
		m := hmac.New(sha256.New, pubJWK(victim.key))
		m.Write([]byte(b64(pj) + "."))
		body, _ := json.Marshal(map[string]string{"protected": b64(pj), "payload": "", "signature": b64(m.Sum(nil))})
		refused(t, a.send(tg, acctPath, body), acme.ProbBadSignatureAlgorithm, acme.ProbMalformed)
	})
	run("jws/alg that does not suit the key", func(t *testing.T) {
		for _, alg := range []string{"ES384", "ES512", "RS256", "EdDSA", "PS256"} {
			refused(t, sendP(t, acctPath, func(p map[string]any) { p["alg"] = alg }, nil), acme.ProbBadSignatureAlgorithm, acme.ProbMalformed)
		}
	})
	run("jws/both jwk and kid", func(t *testing.T) {
		refused(t, sendP(t, acctPath, func(p map[string]any) { p["jwk"] = pubJWK(victim.key) }, nil), acme.ProbMalformed)
	})
	run("jws/kid of another account", func(t *testing.T) {
		// Signed by evil's key, naming the victim's account.
		tg := a.target(nodes[1])
		p := a.prot(victim, nil, a.url(acctPath), a.nonceAt(tg, "acme"))
		r := a.send(tg, acctPath, flat(evil.key, p, []byte(`{"status":"deactivated"}`)))
		refused(t, r)
		if r.status == http.StatusOK {
			t.Fatal("the victim's account was changed with another key")
		}
	})
	run("jws/kid of another provisioner's account", func(t *testing.T) {
		tg := a.target(nodes[1])
		// The acme-eab account's own kid, at the acme directory.
		p := a.prot(eabProvAcct, nil, a.url(base+"/new-order"), a.nonceAt(tg, "acme"))
		refused(t, a.send(tg, base+"/new-order", flat(eabProvAcct.key, p, payloadBytes(map[string]any{"identifiers": dnsIDs("x.acme.test")}))),
			acme.ProbAccountDoesNotExist, acme.ProbUnauthorized)
		// The acme-eab account's id spliced under the acme directory.
		id := eabProvAcct.kid[strings.LastIndex(eabProvAcct.kid, "/")+1:]
		p = a.prot(eabProvAcct, nil, a.url(base+"/new-order"), a.nonceAt(tg, "acme"))
		p["kid"] = a.url(base + "/account/" + id)
		refused(t, a.send(tg, base+"/new-order", flat(eabProvAcct.key, p, payloadBytes(map[string]any{"identifiers": dnsIDs("x.acme.test")}))),
			acme.ProbAccountDoesNotExist, acme.ProbUnauthorized)
		// kid with path tricks.
		for _, kid := range []string{a.url(base + "/account/" + id + "/../x"), a.url(base + "/account/"), a.url("/acme/acme-eab/account/" + id),
			"https://evil.example" + base + "/account/" + id} {
			p = a.prot(eabProvAcct, nil, a.url(base+"/new-order"), a.nonceAt(tg, "acme"))
			p["kid"] = kid
			refused(t, a.send(tg, base+"/new-order", flat(eabProvAcct.key, p, payloadBytes(map[string]any{"identifiers": dnsIDs("x.acme.test")}))),
				acme.ProbAccountDoesNotExist, acme.ProbUnauthorized)
		}
	})
	run("jws/kid of a deactivated account", func(t *testing.T) {
		d := a.newAccount("acme", nil)
		o := a.newOrder(d, "deact.acme.test")
		if r := a.post(nil, d, d.kid, `{"status":"deactivated"}`, nil); r.status != http.StatusOK {
			t.Fatalf("deactivate: %d %s", r.status, r.body)
		}
		refused(t, a.post(nodes[2], d, base+"/new-order", map[string]any{"identifiers": dnsIDs("x.acme.test")}, nil), acme.ProbUnauthorized)
		refused(t, a.post(nodes[1], d, o.URL, nil, nil), acme.ProbUnauthorized)
		refused(t, a.post(nodes[0], d, d.kid, `{"status":"valid"}`, nil), acme.ProbUnauthorized)
		// The key cannot open a new account either (the account exists).
		r := a.postJWK(nil, "acme", d.key, base+"/new-account", map[string]any{"termsOfServiceAgreed": true}, nil)
		if r.status == http.StatusCreated {
			t.Errorf("a deactivated account's key made a new account: %s", r.header.Get("Location"))
		}
	})
	run("jws/two signatures", func(t *testing.T) {
		tg := a.target(nodes[1])
		p := a.prot(victim, nil, a.url(acctPath), a.nonceAt(tg, "acme"))
		var one map[string]string
		json.Unmarshal(flat(victim.key, p, nil), &one)
		var two map[string]string
		json.Unmarshal(flat(evil.key, a.prot(evil, nil, a.url(acctPath), a.nonceAt(tg, "acme")), nil), &two)
		body, _ := json.Marshal(map[string]any{"payload": one["payload"], "signatures": []map[string]string{
			{"protected": one["protected"], "signature": one["signature"]}, {"protected": two["protected"], "signature": two["signature"]}}})
		refused(t, a.send(tg, acctPath, body), acme.ProbMalformed)
	})
	run("jws/compact serialization", func(t *testing.T) {
		tg := a.target(nodes[1])
		var m map[string]string
		json.Unmarshal(flat(victim.key, a.prot(victim, nil, a.url(acctPath), a.nonceAt(tg, "acme")), nil), &m)
		refused(t, a.send(tg, acctPath, []byte(m["protected"]+"."+m["payload"]+"."+m["signature"])), acme.ProbMalformed)
	})
	run("jws/unprotected header members", func(t *testing.T) {
		tg := a.target(nodes[1])
		for _, h := range []map[string]any{{"kid": evil.kid}, {"alg": "ES256"}, {"url": a.url(acctPath)}, {"x-extra": 1}} {
			var m map[string]any
			json.Unmarshal(flat(victim.key, a.prot(victim, nil, a.url(acctPath), a.nonceAt(tg, "acme")), nil), &m)
			m["header"] = h
			body, _ := json.Marshal(m)
			refused(t, a.send(tg, acctPath, body), acme.ProbMalformed)
		}
	})
	run("jws/b64 false and crit", func(t *testing.T) {
		// RFC 7797 unencoded payloads are not ACME: refused.
		r := sendP(t, acctPath, func(p map[string]any) { p["b64"] = false; p["crit"] = []string{"b64"} }, nil)
		refused(t, r, acme.ProbMalformed)
		r = sendP(t, acctPath, func(p map[string]any) { p["crit"] = []string{"x-unknown"}; p["x-unknown"] = 1 }, nil)
		refused(t, r)
	})
	run("jws/payload not JSON", func(t *testing.T) {
		for _, pl := range []string{"not json", `{"identifiers": [`, `[]`, `{"identifiers":[{"type":"dns","value":"x.acme.test"}]} trailing`, "\x00\xff"} {
			refused(t, sendP(t, base+"/new-order", nil, []byte(pl)), acme.ProbMalformed)
		}
	})
	run("jws/oversized body", func(t *testing.T) {
		big := strings.Repeat("A", 200<<10)
		for _, body := range [][]byte{[]byte(`{"protected":"` + big + `"}`), []byte(`{"protected":"` + strings.Repeat("A", 63<<10) + `"}`)} {
			r, err := a.rawTry(a.target(nodes[1]), "POST", base+"/new-order", body, "application/jose+json")
			if err != nil {
				t.Logf("oversized body: connection closed by the server (%v)", err)
				continue
			}
			refused(t, r)
		}
		// A JWS over 64 KiB (the payload itself).
		tg := a.target(nodes[1])
		p := a.prot(victim, nil, a.url(base+"/new-order"), a.nonceAt(tg, "acme"))
		r, err := a.rawTry(tg, "POST", base+"/new-order", flat(victim.key, p, []byte(`{"x":"`+strings.Repeat("A", 50<<10)+`"}`)), "application/jose+json")
		if err == nil {
			refused(t, r)
		}
	})
	run("jws/wrong content type", func(t *testing.T) {
		tg := a.target(nodes[1])
		body := flat(victim.key, a.prot(victim, nil, a.url(acctPath), a.nonceAt(tg, "acme")), nil)
		for _, ct := range []string{"application/json", "", "text/plain", "application/jose"} {
			refused(t, a.raw(tg, "POST", acctPath, body, ct))
		}
	})
	run("jws/jwk that is a private key or symmetric", func(t *testing.T) {
		k := ecKey(t)
		priv, _ := jose.JSONWebKey{Key: k}.MarshalJSON()
		r := a.postJWK(nodes[0], "acme", k, base+"/new-account", map[string]any{"termsOfServiceAgreed": true},
			func(p map[string]any) { p["jwk"] = json.RawMessage(priv) })
		refused(t, r, acme.ProbBadPublicKey, acme.ProbMalformed)
		r = a.postJWK(nodes[0], "acme", k, base+"/new-account", map[string]any{"termsOfServiceAgreed": true},
			func(p map[string]any) {
				p["jwk"] = map[string]string{"kty": "oct", "k": b64([]byte("0123456789abcdef0123456789abcdef"))}
			})
		refused(t, r, acme.ProbBadPublicKey, acme.ProbMalformed, acme.ProbBadSignatureAlgorithm)
	})
	run("jws/weak RSA account key (1024 bits)", func(t *testing.T) {
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		r := a.postJWK(nodes[0], "acme", k, base+"/new-account", map[string]any{"termsOfServiceAgreed": true}, nil)
		refused(t, r, acme.ProbBadPublicKey, acme.ProbMalformed)
	})
	run("jws/GET on POST-only resources", func(t *testing.T) {
		for _, p := range []string{acctPath, a.path(victimOrder.URL), base + "/new-order"} {
			refused(t, a.raw(a.target(nodes[0]), "GET", p, nil, ""))
		}
	})
	run("jws/unknown directory", func(t *testing.T) {
		refused(t, a.raw(a.target(nodes[0]), "GET", "/acme/nope/directory", nil, ""))
		if r := a.raw(a.target(nodes[0]), "HEAD", "/acme/nope/new-nonce", nil, ""); r.status != http.StatusNotFound {
			t.Errorf("HEAD new-nonce of no directory: %d", r.status)
		}
		refused(t, a.raw(a.target(nodes[0]), "GET", "/acme/nope/new-nonce", nil, ""))
		refused(t, a.raw(a.target(nodes[0]), "POST", "/acme/nope/new-order", []byte("{}"), "application/jose+json"))
	})

	// ------------------------------------------------------- authorization
	run("authz/read another account's order", func(t *testing.T) {
		for _, u := range []string{victimOrder.URL, victimReady.URL, victimPending.URL} {
			refused(t, a.post(nodes[0], evil, u, nil, nil))
		}
	})
	run("authz/read another account's authorization", func(t *testing.T) {
		refused(t, a.post(nodes[1], evil, victimPendingAuthz, nil, nil))
		refused(t, a.post(nodes[1], evil, victimOrder.Authorizations[0], nil, nil))
	})
	run("authz/deactivate another account's authorization", func(t *testing.T) {
		refused(t, a.post(nodes[2], evil, victimPendingAuthz, `{"status":"deactivated"}`, nil))
		refused(t, a.post(nodes[2], evil, victimReady.Authorizations[0], `{"status":"deactivated"}`, nil))
		if z := a.authz(victim, victimPendingAuthz); z.Status != fsm.ACMEPending {
			t.Errorf("victim's authz is now %s", z.Status)
		}
		if o := a.order(victim, victimReady.URL); o.Status != fsm.ACMEReady {
			t.Errorf("victim's ready order is now %s", o.Status)
		}
	})
	run("authz/trigger another account's challenge", func(t *testing.T) {
		refused(t, a.post(nodes[0], evil, victimChall, "{}", nil))
		z := a.authz(victim, victimPendingAuthz)
		if _, _, st := z.challengeOf("http-01"); st != fsm.ACMEPending {
			t.Errorf("victim's challenge is now %s", st)
		}
	})
	run("authz/download another account's certificate", func(t *testing.T) {
		refused(t, a.post(nodes[1], evil, victimOrder.Certificate, nil, nil))
		refused(t, a.post(nodes[1], eabProvAcct, strings.Replace(victimOrder.Certificate, "/acme/acme/", "/acme/acme-eab/", 1), nil, nil))
	})
	run("authz/finalize another account's order", func(t *testing.T) {
		before := len(a.certs("acme"))
		refused(t, a.finalize(nodes[2], evil, victimReady, csrDER(t, ecKey(t), "", "v2.acme.test")))
		if o := a.order(victim, victimReady.URL); o.Status != fsm.ACMEReady {
			t.Errorf("victim's order is now %s", o.Status)
		}
		if after := len(a.certs("acme")); after != before {
			t.Errorf("certificates: %d -> %d", before, after)
		}
	})
	run("authz/list another account's orders", func(t *testing.T) {
		refused(t, a.post(nodes[0], evil, victim.kid+"/orders", nil, nil))
	})
	run("authz/update or deactivate another account", func(t *testing.T) {
		refused(t, a.post(nodes[0], evil, victim.kid, `{"status":"deactivated"}`, nil))
		refused(t, a.post(nodes[0], evil, victim.kid, `{"contact":["mailto:evil@evil.example"]}`, nil))
		refused(t, a.post(nodes[0], evil, victim.kid, nil, nil))
		r := a.post(nodes[0], victim, victim.kid, nil, nil)
		if r.status != http.StatusOK || !strings.Contains(string(r.body), `"valid"`) || strings.Contains(string(r.body), "evil") {
			t.Errorf("victim's account: %d %s", r.status, r.body)
		}
	})
	run("authz/revoke another account's certificate", func(t *testing.T) {
		refused(t, a.post(nodes[1], evil, base+"/revoke-cert", map[string]any{"certificate": b64(victimLeaf)}, nil), acme.ProbUnauthorized)
		// by the other provisioner's account, through its own directory
		refused(t, a.post(nodes[1], eabProvAcct, "/acme/acme-eab/revoke-cert", map[string]any{"certificate": b64(victimLeaf)}, nil), acme.ProbUnauthorized)
		// signed with a key that is not the certificate's (jwk)
		k := ecKey(t)
		refused(t, a.postJWK(nodes[2], "acme", k, base+"/revoke-cert", map[string]any{"certificate": b64(victimLeaf)}, nil), acme.ProbUnauthorized)
		// signed with the victim's account key as jwk: not the certificate's key either
		refused(t, a.postJWK(nodes[2], "acme", victim.key, base+"/revoke-cert", map[string]any{"certificate": b64(victimLeaf)}, nil), acme.ProbUnauthorized, acme.ProbMalformed)
		// a doctored certificate with the victim's serial, evil's key
		leaf, _ := x509.ParseCertificate(victimLeaf)
		self := &x509.Certificate{SerialNumber: leaf.SerialNumber, Subject: leaf.Subject, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, DNSNames: leaf.DNSNames}
		der, _ := x509.CreateCertificate(rand.Reader, self, self, evil.key.Public(), evil.key)
		refused(t, a.postJWK(nodes[2], "acme", evil.key, base+"/revoke-cert", map[string]any{"certificate": b64(der)}, nil))
		refused(t, a.post(nodes[2], evil, base+"/revoke-cert", map[string]any{"certificate": b64(der)}, nil))
		for _, c := range a.certs("acme") {
			if c.Status == "revoked" && c.Serial == fmt.Sprintf("%x", leaf.SerialNumber) {
				t.Fatalf("the victim's certificate was revoked")
			}
		}
	})
	run("authz/revoke with bad reasons", func(t *testing.T) {
		for _, reason := range []int{2, 6, 7, 8, 10, -1, 1 << 40} {
			refused(t, a.post(nodes[1], victim, base+"/revoke-cert", map[string]any{"certificate": b64(victimLeaf), "reason": reason}, nil),
				acme.ProbBadRevocationReason, acme.ProbMalformed)
		}
	})
	innerJWS := func(newKey crypto.Signer, prot map[string]any, payload any) []byte {
		return flat(newKey, prot, payloadBytes(payload))
	}
	keyChange := func(acc *atkAcct, inner []byte) reply {
		return a.post(nodes[1], acc, base+"/key-change", json.RawMessage(inner), nil)
	}
	run("keychange/to a key of another account", func(t *testing.T) {
		// evil owns both accounts here: evil2's key is taken.
		evil2 := a.newAccount("acme", nil)
		evilAcc := a.newAccount("acme", nil)
		inner := innerJWS(evil2.key, map[string]any{"alg": "ES256", "jwk": pubJWK(evil2.key), "url": a.url(base + "/key-change")},
			map[string]any{"account": evilAcc.kid, "oldKey": pubJWK(evilAcc.key)})
		r := keyChange(evilAcc, inner)
		refused(t, r)
		// evilAcc still answers to its key; evil2 too.
		if r := a.post(nil, evilAcc, evilAcc.kid, nil, nil); r.status != http.StatusOK {
			t.Errorf("evilAcc lost its key: %d %s", r.status, r.body)
		}
		if r := a.post(nil, evil2, evil2.kid, nil, nil); r.status != http.StatusOK {
			t.Errorf("evil2 lost its key: %d %s", r.status, r.body)
		}
	})
	run("keychange/inner JWS naming another account", func(t *testing.T) {
		nk := ecKey(t)
		inner := innerJWS(nk, map[string]any{"alg": "ES256", "jwk": pubJWK(nk), "url": a.url(base + "/key-change")},
			map[string]any{"account": victim.kid, "oldKey": pubJWK(victim.key)})
		refused(t, keyChange(evil, inner), acme.ProbUnauthorized)
		inner = innerJWS(nk, map[string]any{"alg": "ES256", "jwk": pubJWK(nk), "url": a.url(base + "/key-change")},
			map[string]any{"account": victim.kid, "oldKey": pubJWK(evil.key)})
		refused(t, keyChange(evil, inner), acme.ProbUnauthorized)
		if r := a.post(nil, victim, victim.kid, nil, nil); r.status != http.StatusOK {
			t.Errorf("victim lost its key: %d %s", r.status, r.body)
		}
	})
	run("keychange/inner JWS with the wrong url, oldKey, nonce, kid or signature", func(t *testing.T) {
		acc := a.newAccount("acme", nil)
		nk := ecKey(t)
		good := map[string]any{"account": acc.kid, "oldKey": pubJWK(acc.key)}
		kc := a.url(base + "/key-change")
		cases := map[string][]byte{
			"url of another endpoint": innerJWS(nk, map[string]any{"alg": "ES256", "jwk": pubJWK(nk), "url": a.url(base + "/new-order")}, good),
			"no url":                  innerJWS(nk, map[string]any{"alg": "ES256", "jwk": pubJWK(nk)}, good),
			"oldKey another key":      innerJWS(nk, map[string]any{"alg": "ES256", "jwk": pubJWK(nk), "url": kc}, map[string]any{"account": acc.kid, "oldKey": pubJWK(ecKey(t))}),
			"oldKey missing":          innerJWS(nk, map[string]any{"alg": "ES256", "jwk": pubJWK(nk), "url": kc}, map[string]any{"account": acc.kid}),
			"nonce":                   innerJWS(nk, map[string]any{"alg": "ES256", "jwk": pubJWK(nk), "url": kc, "nonce": a.nonceAt(e.lb, "acme")}, good),
			"kid":                     innerJWS(nk, map[string]any{"alg": "ES256", "jwk": pubJWK(nk), "kid": acc.kid, "url": kc}, good),
			"signed by another key":   innerJWS(ecKey(t), map[string]any{"alg": "ES256", "jwk": pubJWK(nk), "url": kc}, good),
			"private jwk":             innerJWS(nk, map[string]any{"alg": "ES256", "jwk": func() json.RawMessage { j, _ := jose.JSONWebKey{Key: nk}.MarshalJSON(); return j }(), "url": kc}, good),
			"alg mismatch":            innerJWS(nk, map[string]any{"alg": "ES384", "jwk": pubJWK(nk), "url": kc}, good),
			"payload not JSON":        innerJWS(nk, map[string]any{"alg": "ES256", "jwk": pubJWK(nk), "url": kc}, "nope"),
			"not a JWS":               []byte(`{"account":"` + acc.kid + `"}`),
		}
		for name, inner := range cases {
			r := keyChange(acc, inner)
			if r.status < 400 {
				t.Errorf("%s: key change accepted: %d %s", name, r.status, r.body)
				continue
			}
			refused(t, r)
		}
		// Still the old key.
		if r := a.post(nil, acc, acc.kid, nil, nil); r.status != http.StatusOK {
			t.Errorf("account lost its key: %d %s", r.status, r.body)
		}
	})

	// ------------------------------------------------------------ issuance
	run("issuance/finalize with CSRs that do not match the order", func(t *testing.T) {
		acc := a.newAccount("acme", nil)
		o := a.readyOrder(acc, "f1.acme.test", "f2.acme.test")
		before := len(a.certs("acme"))
		p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
		cases := []struct {
			name string
			csr  []byte
		}{
			{"extra name", csrDER(t, ecKey(t), "", "f1.acme.test", "f2.acme.test", "f3.acme.test")},
			{"extra name outside the policy", csrDER(t, ecKey(t), "", "f1.acme.test", "f2.acme.test", "evil.example")},
			{"fewer names", csrDER(t, ecKey(t), "", "f1.acme.test")},
			{"other CN with a dot", csrDER(t, ecKey(t), "other.acme.test", "f1.acme.test", "f2.acme.test")},
			{"CN localhost", csrDER(t, ecKey(t), "localhost", "f1.acme.test", "f2.acme.test")},
			{"CN free text", csrDER(t, ecKey(t), "Quorum Root CA", "f1.acme.test", "f2.acme.test")},
			{"wildcard the order lacks", csrDER(t, ecKey(t), "", "f1.acme.test", "f2.acme.test", "*.acme.test")},
			{"IP SAN", csrDER(t, ecKey(t), "", "f1.acme.test", "f2.acme.test", "127.0.0.1")},
			{"URI SAN", csrDER(t, ecKey(t), "", "f1.acme.test", "f2.acme.test", "spiffe://acme.test/admin")},
			{"email SAN", csrDER(t, ecKey(t), "", "f1.acme.test", "f2.acme.test", "root@acme.test")},
			{"key type the policy refuses (P-521)", csrDER(t, p521, "", "f1.acme.test", "f2.acme.test")},
			{"weak RSA key", csrDER(t, rsa1024, "", "f1.acme.test", "f2.acme.test")},
			{"bad CSR signature", func() []byte {
				d := csrDER(t, ecKey(t), "", "f1.acme.test", "f2.acme.test")
				d[len(d)-3] ^= 0xff
				return d
			}()},
			{"not a CSR", []byte("hello")},
		}
		for _, c := range cases {
			r := a.finalize(nodes[int(len(c.name))%3], acc, o, c.csr)
			if r.status == http.StatusOK {
				t.Errorf("%s: finalized: %s", c.name, r.body)
				continue
			}
			if r.status >= 500 {
				t.Errorf("%s: %d %s", c.name, r.status, r.body)
				continue
			}
			typ, _ := problemOf(t, r)
			if typ != acme.ProbBadCSR && typ != acme.ProbBadPublicKey && typ != acme.ProbRejectedIdentifier && typ != acme.ProbMalformed {
				t.Errorf("%s: problem %s %s", c.name, typ, r.body)
			}
		}
		if after := len(a.certs("acme")); after != before {
			t.Errorf("certificates: %d -> %d", before, after)
		}
		if o2 := a.order(acc, o.URL); o2.Status != fsm.ACMEReady {
			t.Errorf("order is %s after refused finalizations", o2.Status)
		}
		// An empty csr and a non-base64 one.
		refused(t, a.post(nil, acc, o.Finalize, `{"csr":""}`, nil), acme.ProbBadCSR, acme.ProbMalformed)
		refused(t, a.post(nil, acc, o.Finalize, `{"csr":"!!!"}`, nil), acme.ProbBadCSR, acme.ProbMalformed)
		refused(t, a.post(nil, acc, o.Finalize, `{"csr":12}`, nil), acme.ProbBadCSR, acme.ProbMalformed)
	})
	run("issuance/finalize with the account key in the CSR", func(t *testing.T) {
		acc := a.newAccount("acme", nil)
		o := a.readyOrder(acc, "own.acme.test")
		r := a.finalize(nil, acc, o, csrDER(t, acc.key, "", "own.acme.test"))
		if r.status == http.StatusOK {
			t.Errorf("a certificate was issued for the account's own key (order %s)", o.URL)
		} else {
			refused(t, r, acme.ProbBadCSR, acme.ProbBadPublicKey)
		}
	})
	run("issuance/finalize a pending order", func(t *testing.T) {
		acc := a.newAccount("acme", nil)
		o := a.newOrder(acc, "pend.acme.test")
		before := len(a.certs("acme"))
		refused(t, a.finalize(nil, acc, o, csrDER(t, ecKey(t), "", "pend.acme.test")), acme.ProbOrderNotReady)
		if after := len(a.certs("acme")); after != before {
			t.Errorf("certificates: %d -> %d", before, after)
		}
	})
	run("issuance/finalize concurrently through every node", func(t *testing.T) {
		acc := a.newAccount("acme", nil)
		for round := range 3 {
			name := fmt.Sprintf("race%d.acme.test", round)
			o := a.readyOrder(acc, name)
			before := len(a.certs("acme"))
			var wg sync.WaitGroup
			var mu sync.Mutex
			var oks, fivexx int
			for i := range 9 {
				csr := csrDER(t, ecKey(t), "", name)
				tn := nodes[i%3]
				n := a.nonceAt(a.target(tn), "acme")
				body := flat(acc.key, a.prot(acc, nil, o.Finalize, n), payloadBytes(map[string]string{"csr": b64(csr)}))
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := a.rawTry(a.target(tn), "POST", a.path(o.Finalize), body, "application/jose+json")
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						t.Errorf("finalize: %v", err)
						return
					}
					switch {
					case r.status == http.StatusOK:
						oks++
					case r.status >= 500:
						fivexx++
						t.Errorf("concurrent finalize: %d %s", r.status, r.body)
					case !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json"):
						t.Errorf("concurrent finalize refusal not a problem: %d %s", r.status, r.body)
					}
				}()
			}
			wg.Wait()
			after := a.certs("acme")
			if len(after)-before != 1 {
				t.Errorf("round %d: %d certificates issued for one order", round, len(after)-before)
			}
			if oks != 1 {
				t.Errorf("round %d: %d finalizations with different keys succeeded", round, oks)
			}
			o2 := a.order(acc, o.URL)
			if o2.Status != fsm.ACMEValid || o2.Certificate == "" {
				t.Errorf("round %d: order %+v", round, o2)
			}
		}
	})
	run("issuance/finalize a valid order again", func(t *testing.T) {
		acc := a.newAccount("acme", nil)
		k := ecKey(t)
		o, _ := a.issue(acc, k, "again.acme.test")
		before := len(a.certs("acme"))
		refused(t, a.finalize(nil, acc, o, csrDER(t, ecKey(t), "", "again.acme.test")), acme.ProbOrderNotReady)
		// A retry with the same key (an answer lost on the way) gets the
		// order as it is, with its one certificate.
		r := a.finalize(nil, acc, o, csrDER(t, k, "", "again.acme.test"))
		if r.status != http.StatusOK || !strings.Contains(string(r.body), o.Certificate) {
			t.Errorf("finalizing a valid order again with the same key: %d %s", r.status, r.body)
		}
		if after := len(a.certs("acme")); after != before {
			t.Errorf("certificates: %d -> %d", before, after)
		}
	})
	// A server provisioner reserves names: ACME must not get them.
	srv := apitypes.Provisioner{Name: "atk-servers", Kind: fsm.KindServer, Authority: "default",
		Policy: apitypes.Policy{DNS: []string{"ca.acme.test", "*.srv.acme.test"}, EKU: "server"}}
	if r := e.c.do(nodes[0], "POST", "/v1/admin/provisioners", srv, e.c.admin); r.status != http.StatusCreated && r.status != http.StatusOK {
		t.Fatalf("server provisioner: %d %s", r.status, r.body)
	}
	badOrders := map[string][]fsm.ACMEIdentifier{
		"outside the policy":          dnsIDs("a.example.com"),
		"outside the policy, mixed":   dnsIDs("ok.acme.test", "a.example.com"),
		"IP outside the policy":       dnsIDs("10.0.0.1"),
		"link-local IP":               dnsIDs("169.254.169.254"),
		"IPv6 mapped link-local":      {{Type: "ip", Value: "::ffff:169.254.169.254"}},
		"reserved by a server prov":   dnsIDs("ca.acme.test"),
		"reserved, uppercase + dot":   dnsIDs("CA.ACME.TEST."),
		"reserved, by a wildcard":     dnsIDs("*.acme.test"),
		"reserved wildcard subdomain": dnsIDs("x.srv.acme.test"),
		"unsupported type email":      {{Type: "email", Value: "root@acme.test"}},
		"unsupported type uri":        {{Type: "uri", Value: "spiffe://acme.test/x"}},
		"empty type":                  {{Type: "", Value: "x.acme.test"}},
		"dns value that is an IP":     {{Type: "dns", Value: "127.0.0.1"}},
		"ip value that is a name":     {{Type: "ip", Value: "x.acme.test"}},
		"dns value with a port":       {{Type: "dns", Value: "x.acme.test:80"}},
		"dns value that is a URI":     {{Type: "dns", Value: "spiffe://acme.test/x"}},
		"dns value that is an email":  {{Type: "dns", Value: "root@acme.test"}},
		"double wildcard":             {{Type: "dns", Value: "*.*.acme.test"}},
		"inner wildcard":              {{Type: "dns", Value: "a.*.acme.test"}},
		"bare wildcard":               {{Type: "dns", Value: "*"}},
		"NUL in name":                 {{Type: "dns", Value: "x.acme.test\x00.example.com"}},
		"empty value":                 {{Type: "dns", Value: ""}},
		"no identifiers":              {},
	}
	for name, ids := range badOrders {
		run("issuance/order "+name, func(t *testing.T) {
			r := a.post(nil, evil, base+"/new-order", map[string]any{"identifiers": ids}, nil)
			refused(t, r)
		})
	}
	run("issuance/order with too many identifiers", func(t *testing.T) {
		var names []string
		for i := range 2000 {
			names = append(names, fmt.Sprintf("n%d.acme.test", i))
		}
		refused(t, a.post(nil, evil, base+"/new-order", map[string]any{"identifiers": dnsIDs(names...)}, nil))
	})
	run("issuance/wildcard offers dns-01 only", func(t *testing.T) {
		o := a.newOrder(evil, "*.w.acme.test")
		z := a.authz(evil, o.Authorizations[0])
		for _, c := range z.Challenges {
			if c.Type != "dns-01" {
				t.Errorf("wildcard authorization offers %s", c.Type)
			}
		}
		// Asking for http-01 on it anyway.
		cu, _, _ := z.challengeOf("dns-01")
		refused(t, a.post(nil, evil, strings.TrimSuffix(cu, "dns-01")+"http-01", "{}", nil))
		refused(t, a.post(nil, evil, strings.TrimSuffix(cu, "dns-01")+"tls-alpn-01", "{}", nil))
	})
	run("issuance/notBefore and notAfter abuse", func(t *testing.T) {
		refused(t, a.post(nil, evil, base+"/new-order", map[string]any{"identifiers": dnsIDs("nb.acme.test"), "notBefore": time.Now().Add(-48 * time.Hour).Format(time.RFC3339)}, nil))
		refused(t, a.post(nil, evil, base+"/new-order", map[string]any{"identifiers": dnsIDs("nb.acme.test"), "notAfter": time.Now().Add(-time.Hour).Format(time.RFC3339)}, nil))
		refused(t, a.post(nil, evil, base+"/new-order", map[string]any{"identifiers": dnsIDs("nb.acme.test"), "notAfter": "tomorrow"}, nil))
		// Ten years: refused at once, or at least never issued.
		before := len(a.certs("acme"))
		r := a.post(nil, evil, base+"/new-order", map[string]any{"identifiers": dnsIDs("na.acme.test"), "notAfter": time.Now().Add(10 * 365 * 24 * time.Hour).Format(time.RFC3339)}, nil)
		if r.status == http.StatusCreated {
			var o atkOrder
			r.decode(t, &o)
			o.URL = r.header.Get("Location")
			a.solve(evil, &o)
			fr := a.finalize(nil, evil, &o, csrDER(t, ecKey(t), "", "na.acme.test"))
			if fr.status == http.StatusOK {
				t.Errorf("a ten-year order was finalized: %s", fr.body)
				for _, c := range a.certs("acme") {
					if c.NotAfter.After(time.Now().Add(91 * 24 * time.Hour)) {
						t.Errorf("certificate %s valid until %s, beyond max_ttl", c.Serial, c.NotAfter)
					}
				}
			} else {
				refused(t, fr)
			}
		} else {
			refused(t, r)
		}
		// A notAfter that has passed by finalization time must not turn
		// into the default lifetime.
		r = a.post(nil, evil, base+"/new-order", map[string]any{"identifiers": dnsIDs("nc.acme.test"), "notAfter": time.Now().Add(2 * time.Second).Format(time.RFC3339)}, nil)
		if r.status == http.StatusCreated {
			var o atkOrder
			r.decode(t, &o)
			o.URL = r.header.Get("Location")
			a.solve(evil, &o)
			time.Sleep(3 * time.Second)
			fr := a.finalize(nil, evil, &o, csrDER(t, ecKey(t), "", "nc.acme.test"))
			if fr.status == http.StatusOK {
				na, _ := time.Parse(time.RFC3339, o.NotAfter)
				for _, c := range a.certs("acme") {
					if len(c.SANs) == 1 && c.SANs[0] == "nc.acme.test" && c.NotAfter.After(na.Add(time.Second)) {
						t.Errorf("order notAfter %s, certificate notAfter %s", na, c.NotAfter)
					}
				}
			} else if fr.status >= 500 {
				t.Errorf("finalize of an order whose notAfter passed: %d %s", fr.status, fr.body)
			} else {
				refused(t, fr)
			}
		}
		_ = before
	})

	// ----------------------------------------------------------------- EAB
	mintEAB := func(prov string) (string, string) {
		r := e.c.do(nodes[0], "POST", "/v1/admin/acme/eab", map[string]any{"provisioner": prov}, e.c.admin)
		if r.status != http.StatusCreated {
			t.Fatalf("mint eab: %d %s", r.status, r.body)
		}
		var k struct{ ID, Key string }
		r.decode(t, &k)
		return k.ID, k.Key
	}
	eabNew := "/acme/acme-eab/new-account"
	eabAccount := func(tn *testNode, key crypto.Signer, eab []byte) reply {
		return a.postJWK(tn, "acme-eab", key, eabNew, map[string]any{"termsOfServiceAgreed": true, "externalAccountBinding": json.RawMessage(eab)}, nil)
	}
	run("eab/one key, two accounts at once through different nodes", func(t *testing.T) {
		for round := range 5 {
			kid, hk := mintEAB("acme-eab")
			var wg sync.WaitGroup
			var mu sync.Mutex
			created := 0
			for i := range 6 {
				key := ecKey(t)
				tn := nodes[i%3]
				n := a.nonceAt(a.target(tn), "acme-eab")
				eab := eabJWS(t, kid, hk, a.url(eabNew), pubJWK(key), nil)
				body := flat(key, a.prot(nil, key, a.url(eabNew), n), payloadBytes(map[string]any{"termsOfServiceAgreed": true, "externalAccountBinding": json.RawMessage(eab)}))
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := a.rawTry(a.target(tn), "POST", eabNew, body, "application/jose+json")
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						t.Error(err)
						return
					}
					if r.status == http.StatusCreated {
						created++
					} else if r.status >= 500 {
						t.Errorf("round %d: %d %s", round, r.status, r.body)
					}
				}()
			}
			wg.Wait()
			if created != 1 {
				t.Errorf("round %d: one EAB key made %d accounts", round, created)
			}
		}
	})
	run("eab/url of another endpoint", func(t *testing.T) {
		kid, hk := mintEAB("acme-eab")
		key := ecKey(t)
		for _, u := range []string{a.url("/acme/acme-eab/new-order"), a.url("/acme/acme/new-account"), "https://evil.example/acme/acme-eab/new-account", ""} {
			refused(t, eabAccount(nodes[1], key, eabJWS(t, kid, hk, u, pubJWK(key), nil)), acme.ProbUnauthorized, acme.ProbMalformed)
		}
		// The key is still unused.
		if r := eabAccount(nodes[2], key, eabJWS(t, kid, hk, a.url(eabNew), pubJWK(key), nil)); r.status != http.StatusCreated {
			t.Errorf("key burnt by refused attempts: %d %s", r.status, r.body)
		}
	})
	run("eab/key id of another provisioner", func(t *testing.T) {
		kid, hk := mintEAB("acme") // minted for the directory that does not require EAB
		key := ecKey(t)
		refused(t, eabAccount(nodes[0], key, eabJWS(t, kid, hk, a.url(eabNew), pubJWK(key), nil)), acme.ProbUnauthorized)
		// and an acme-eab key at the acme directory
		kid2, hk2 := mintEAB("acme-eab")
		r := a.postJWK(nodes[0], "acme", key, base+"/new-account", map[string]any{"termsOfServiceAgreed": true,
			"externalAccountBinding": json.RawMessage(eabJWS(t, kid2, hk2, a.url(base+"/new-account"), pubJWK(key), nil))}, nil)
		refused(t, r, acme.ProbUnauthorized)
	})
	run("eab/binding a different JWK", func(t *testing.T) {
		kid, hk := mintEAB("acme-eab")
		key, other := ecKey(t), ecKey(t)
		refused(t, eabAccount(nodes[1], key, eabJWS(t, kid, hk, a.url(eabNew), pubJWK(other), nil)), acme.ProbUnauthorized)
		// The binder then uses it for its own key: must still work once.
		if r := eabAccount(nodes[1], other, eabJWS(t, kid, hk, a.url(eabNew), pubJWK(other), nil)); r.status != http.StatusCreated {
			t.Errorf("key burnt by a refused attempt: %d %s", r.status, r.body)
		}
	})
	run("eab/malformed bindings", func(t *testing.T) {
		kid, hk := mintEAB("acme-eab")
		key := ecKey(t)
		cases := map[string][]byte{
			"nonce":               eabJWS(t, kid, hk, a.url(eabNew), pubJWK(key), func(p map[string]any) { p["nonce"] = "abc" }),
			"wrong MAC":           eabJWS(t, kid, b64([]byte("another key entirely, 32 bytes!!")), a.url(eabNew), pubJWK(key), nil),
			"alg none":            eabJWS(t, kid, hk, a.url(eabNew), pubJWK(key), func(p map[string]any) { p["alg"] = "none" }),
			"no kid":              eabJWS(t, kid, hk, a.url(eabNew), pubJWK(key), func(p map[string]any) { delete(p, "kid") }),
			"signed ES256":        flat(key, map[string]any{"alg": "ES256", "kid": kid, "url": a.url(eabNew)}, pubJWK(key)),
			"null":                []byte("null"),
			"string":              []byte(`"x"`),
			"private jwk payload": nil,
		}
		for name, eab := range cases {
			if name == "private jwk payload" {
				pk := ecKey(t)
				priv, _ := jose.JSONWebKey{Key: pk}.MarshalJSON()
				kid2, hk2 := mintEAB("acme-eab")
				r := eabAccount(nodes[0], pk, eabJWS(t, kid2, hk2, a.url(eabNew), priv, nil))
				refused(t, r)
				continue
			}
			r := eabAccount(nodes[0], key, eab)
			if r.status == http.StatusCreated || r.status == http.StatusOK {
				t.Errorf("%s: account made: %d %s", name, r.status, r.body)
				continue
			}
			refused(t, r)
		}
	})

	// ---------------------------------------------------------- validation
	// start makes an order for name on acc and triggers http-01 with the
	// challenge server answering with h; it returns the challenge's end.
	validateWith := func(t *testing.T, acc *atkAcct, name string, h http.HandlerFunc) (*atkAuthz, string) {
		o := a.newOrder(acc, name)
		zu := o.Authorizations[0]
		z := a.authz(acc, zu)
		cu, tok, _ := z.challengeOf("http-01")
		a.chal.handle("/.well-known/acme-challenge/"+tok, h)
		if r := a.post(nil, acc, cu, "{}", nil); r.status != http.StatusOK {
			t.Fatalf("challenge: %d %s", r.status, r.body)
		}
		return a.waitAuthz(acc, zu), tok
	}
	detailOf := func(z *atkAuthz) string {
		for _, c := range z.Challenges {
			if c.Type == "http-01" && c.Error != nil {
				return c.Error.Type + " " + c.Error.Detail
			}
		}
		return ""
	}
	redirect := func(to string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, to, http.StatusFound) }
	}
	run("validation/redirect to another port", func(t *testing.T) {
		z, _ := validateWith(t, evil, "rp.acme.test", redirect("http://127.0.0.1:"+e.tlsPort+"/"))
		if z.Status == fsm.ACMEValid {
			t.Fatal("valid")
		}
		z, _ = validateWith(t, evil, "rp2.acme.test", redirect("https://127.0.0.1:"+nodes[0].node.APIAddr()[strings.LastIndex(nodes[0].node.APIAddr(), ":")+1:]+"/v1/health"))
		if z.Status == fsm.ACMEValid {
			t.Fatal("valid")
		}
		z, _ = validateWith(t, evil, "rp3.acme.test", redirect("ftp://127.0.0.1/"))
		if z.Status == fsm.ACMEValid {
			t.Fatal("valid")
		}
		z, _ = validateWith(t, evil, "rp4.acme.test", redirect("file:///etc/passwd"))
		if z.Status == fsm.ACMEValid {
			t.Fatal("valid")
		}
	})
	run("validation/redirect to link-local metadata", func(t *testing.T) {
		for i, to := range []string{"http://169.254.169.254:" + e.httpPort + "/latest/meta-data/", "http://[::ffff:169.254.169.254]:" + e.httpPort + "/",
			"http://[fe80::1]:" + e.httpPort + "/", "http://0.0.0.0:" + e.httpPort + "/"} {
			z, _ := validateWith(t, evil, fmt.Sprintf("ll%d.acme.test", i), redirect(to))
			if z.Status == fsm.ACMEValid {
				t.Fatalf("%s: valid", to)
			}
			if d := detailOf(z); strings.Contains(d, "dial tcp") {
				t.Errorf("%s: the validator dialled it: %s", to, d)
			}
		}
	})
	run("validation/error details do not quote what internal servers answered", func(t *testing.T) {
		const secret = "S3CR3T-internal-token"
		// An internal service, reached by redirect, answers a redirect of its
		// own whose Location carries a secret (an OAuth code, a signed URL).
		a.chal.handle("/internal-sso", redirect("http://127.0.0.1:1/callback?code="+secret))
		z, _ := validateWith(t, evil, "leak1.acme.test", redirect("/internal-sso"))
		if d := detailOf(z); strings.Contains(d, secret) {
			t.Errorf("internal Location quoted back to the client: %s", d)
		}
		// An internal non-HTTP service banner.
		banner := func(w http.ResponseWriter, r *http.Request) {
			c, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			buf.WriteString("SSH-2.0-OpenSSH_" + secret + "\r\n")
			buf.Flush()
			c.Close()
		}
		a.chal.handle("/internal-ssh", banner)
		z, _ = validateWith(t, evil, "leak2.acme.test", redirect("/internal-ssh"))
		if d := detailOf(z); strings.Contains(d, secret) {
			t.Errorf("internal banner quoted back to the client: %s", d)
		}
		// An internal page's body.
		a.chal.handle("/internal-page", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "password="+secret) })
		z, _ = validateWith(t, evil, "leak3.acme.test", redirect("/internal-page"))
		if d := detailOf(z); strings.Contains(d, secret) {
			t.Errorf("internal body quoted back to the client: %s", d)
		}
		// An internal header (Set-Cookie) via malformed Location parse error.
		a.chal.handle("/internal-badloc", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "http://[::1%zz"+secret)
			w.WriteHeader(http.StatusFound)
		})
		z, _ = validateWith(t, evil, "leak4.acme.test", redirect("/internal-badloc"))
		if d := detailOf(z); strings.Contains(d, secret) {
			t.Errorf("internal Location header quoted back to the client: %s", d)
		}
	})
	run("validation/status of an internal URL is not an oracle", func(t *testing.T) {
		// The validator may reach internal hosts on the challenge port; what
		// they answer must not come back, the status included.
		a.chal.handle("/internal-exists", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "x") })
		a.chal.handle("/internal-admin", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusUnauthorized) })
		z1, _ := validateWith(t, evil, "orc1.acme.test", redirect("/internal-exists"))
		z2, _ := validateWith(t, evil, "orc2.acme.test", redirect("/internal-admin"))
		z3, _ := validateWith(t, evil, "orc3.acme.test", redirect("/internal-missing"))
		d1, d2, d3 := detailOf(z1), detailOf(z2), detailOf(z3)
		strip := func(d string) string {
			if i := strings.Index(d, "/.well-known/acme-challenge/"); i >= 0 {
				j := strings.IndexAny(d[i:], " :")
				if j > 0 {
					return d[:strings.Index(d, "http://")] + d[i+j:]
				}
			}
			return d
		}
		if strip(d1) != strip(d2) || strip(d2) != strip(d3) {
			t.Errorf("the challenge errors tell internal answers apart:\n 200: %s\n 401: %s\n 404: %s", d1, d2, d3)
		}
	})
	run("accounts/same key, new-account at once through every node", func(t *testing.T) {
		key := ecKey(t)
		var wg sync.WaitGroup
		var mu sync.Mutex
		locs := map[string]bool{}
		created := 0
		for i := range 9 {
			tn := nodes[i%3]
			n := a.nonceAt(a.target(tn), "acme")
			body := flat(key, a.prot(nil, key, a.url(base+"/new-account"), n), payloadBytes(map[string]any{"termsOfServiceAgreed": true}))
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := a.rawTry(a.target(tn), "POST", base+"/new-account", body, "application/jose+json")
				mu.Lock()
				defer mu.Unlock()
				if err != nil || r.status >= 500 {
					t.Errorf("new-account: %v %d %s", err, r.status, r.body)
					return
				}
				if r.status == http.StatusCreated {
					created++
				}
				locs[r.header.Get("Location")] = true
			}()
		}
		wg.Wait()
		if created != 1 || len(locs) != 1 {
			t.Errorf("one key: %d accounts created, %d locations %v", created, len(locs), locs)
		}
	})
	run("accounts/orders cursor of another account", func(t *testing.T) {
		id := victimPending.URL[strings.LastIndex(victimPending.URL, "/")+1:]
		r := a.post(nil, evil, evil.kid+"/orders?cursor="+id, nil, nil)
		if strings.Contains(string(r.body), id) || strings.Contains(string(r.body), victimOrder.URL) {
			t.Errorf("another account's orders listed: %s", r.body)
		}
		r = a.post(nil, evil, evil.kid+"/orders?cursor=%00", nil, nil)
		if r.status >= 500 || strings.Contains(string(r.body), victimOrder.URL) {
			t.Errorf("cursor NUL: %d %s", r.status, r.body)
		}
	})
	run("validation/huge body", func(t *testing.T) {
		start := time.Now()
		z, _ := validateWith(t, evil, "huge.acme.test", func(w http.ResponseWriter, r *http.Request) {
			chunk := bytes.Repeat([]byte("A"), 64<<10)
			for range 1600 { // 100 MiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		})
		if z.Status == fsm.ACMEValid {
			t.Fatal("valid")
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("validation of a huge body took %s", d)
		}
	})
	run("validation/slow server", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		acc := a.newAccount("acme", nil)
		o := a.newOrder(acc, "slow.acme.test")
		z := a.authz(acc, o.Authorizations[0])
		cu, tok, _ := z.challengeOf("http-01")
		a.chal.handle("/.well-known/acme-challenge/"+tok, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-time.After(60 * time.Second):
			}
		})
		start := time.Now()
		r := a.post(nil, acc, cu, "{}", nil)
		if r.status != http.StatusOK {
			t.Fatalf("challenge: %d %s", r.status, r.body)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the challenge POST waited %s for a slow server", d)
		}
		// Other requests are answered meanwhile.
		t0 := time.Now()
		if r := a.post(nil, victim, victim.kid, nil, nil); r.status != http.StatusOK || time.Since(t0) > 3*time.Second {
			t.Errorf("server slowed by a slow validation: %d in %s", r.status, time.Since(t0))
		}
		z = a.waitAuthz(acc, o.Authorizations[0])
		if z.Status != fsm.ACMEInvalid {
			t.Errorf("slow server: authz %s", z.Status)
		}
		if d := time.Since(start); d > 25*time.Second {
			t.Errorf("slow validation ended after %s", d)
		}
	})
	run("validation/re-trigger a valid or invalid challenge", func(t *testing.T) {
		acc := a.newAccount("acme", nil)
		// invalid first
		z, tok := validateWith(t, acc, "retry.acme.test", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
		if z.Status != fsm.ACMEInvalid {
			t.Fatalf("authz %s", z.Status)
		}
		// Now answer correctly and trigger again: must stay invalid.
		a.chal.handle("/.well-known/acme-challenge/"+tok, nil)
		a.chal.answer(tok, acme.KeyAuthorization(tok, acc.thumb))
		hits := a.chal.hitsOf("/.well-known/acme-challenge/" + tok)
		cu, _, _ := z.challengeOf("http-01")
		r := a.post(nil, acc, cu, "{}", nil)
		if r.status >= 500 {
			t.Errorf("re-trigger: %d %s", r.status, r.body)
		}
		time.Sleep(time.Second)
		if z := a.waitAuthz(acc, a.authzURLOf(cu)); z.Status != fsm.ACMEInvalid {
			t.Errorf("an invalid authorization became %s", z.Status)
		}
		// the other challenge types of the invalid authz
		for _, typ := range []string{"dns-01", "tls-alpn-01"} {
			if u, _, _ := z.challengeOf(typ); u != "" {
				r := a.post(nil, acc, u, "{}", nil)
				if r.status >= 500 {
					t.Errorf("%s: %d", typ, r.status)
				}
			}
		}
		if got := a.chal.hitsOf("/.well-known/acme-challenge/" + tok); got != hits {
			t.Errorf("the validator fetched the invalid challenge again (%d -> %d)", hits, got)
		}
		if z := a.authz(acc, a.authzURLOf(cu)); z.Status != fsm.ACMEInvalid {
			t.Errorf("invalid authz now %s", z.Status)
		}
		// valid: triggering again changes nothing and fetches nothing.
		o := a.readyOrder(acc, "retry2.acme.test")
		vz := a.authz(acc, o.Authorizations[0])
		vcu, vtok, _ := vz.challengeOf("http-01")
		hits = a.chal.hitsOf("/.well-known/acme-challenge/" + vtok)
		a.chal.handle("/.well-known/acme-challenge/"+vtok, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
		for _, typ := range []string{"http-01", "dns-01", "tls-alpn-01"} {
			u := strings.TrimSuffix(vcu, "http-01") + typ
			if r := a.post(nil, acc, u, "{}", nil); r.status >= 500 {
				t.Errorf("%s: %d", typ, r.status)
			}
		}
		time.Sleep(time.Second)
		if got := a.chal.hitsOf("/.well-known/acme-challenge/" + vtok); got != hits {
			t.Errorf("a valid challenge was validated again")
		}
		if o2 := a.order(acc, o.URL); o2.Status != fsm.ACMEReady {
			t.Errorf("order now %s", o2.Status)
		}
	})
}

func (a *attacker) authzURLOf(challURL string) string {
	// .../chall/{authz}/{type} -> .../authz/{authz}
	i := strings.Index(challURL, "/chall/")
	rest := challURL[i+len("/chall/"):]
	id := rest[:strings.Index(rest, "/")]
	return challURL[:i] + "/authz/" + id
}

// eabJWS is an external account binding: jwk (the payload) MACed with the
// base64url key hk under key id kid, for url u.
func eabJWS(t *testing.T, kid, hk, u string, jwk []byte, mut func(map[string]any)) []byte {
	t.Helper()
	key, err := base64.RawURLEncoding.DecodeString(hk)
	if err != nil {
		t.Fatal(err)
	}
	p := map[string]any{"alg": "HS256", "kid": kid, "url": u}
	if mut != nil {
		mut(p)
	}
	pj, _ := json.Marshal(p)
	in := b64(pj) + "." + b64(jwk)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(in))
	out, _ := json.Marshal(map[string]string{"protected": b64(pj), "payload": b64(jwk), "signature": b64(m.Sum(nil))})
	return out
}

// TestACMEAttackValidatorMetadata: the validator's own guard against the
// cloud's metadata services, which it says it never asks anything. The
// identifiers go straight to Validate (an address redirect reaches the
// same dial).
func TestACMEAttackValidatorMetadata(t *testing.T) {
	v := acme.NewValidator(acme.ValidatorConfig{HTTP01Port: 9, TLSALPNPort: 9, Timeout: 2 * time.Second})
	for _, ip := range []string{
		"169.254.169.254", // AWS, GCP, Azure, OCI
		"fd00:ec2::254",   // AWS IMDS over IPv6 (Nitro)
		"::ffff:169.254.169.254",
	} {
		for _, typ := range []string{"http-01", "tls-alpn-01"} {
			t.Run(typ+" "+ip, func(t *testing.T) {
				err := v.Validate(context.Background(), fsm.ACMEIdentifier{Type: "ip", Value: ip}, typ, "tok", "tok.x")
				if err == nil {
					t.Fatal("validated")
				}
				t.Logf("%s: %v", ip, err)
				if !strings.Contains(err.Error(), "link-local") {
					t.Errorf("the validator tried to connect to the metadata address %s: %v", ip, err)
				}
			})
		}
	}
}

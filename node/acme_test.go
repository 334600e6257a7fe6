package node

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/challenge/http01"
	"github.com/go-acme/lego/v5/challenge/tlsalpn01"
	"github.com/go-acme/lego/v5/lego"
	"github.com/go-acme/lego/v5/registration"
	"github.com/miekg/dns"

	"github.com/quorumca/quorumca/acme"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/freeport"
)

// ACME with a real client (lego, as a library) against a real three-node
// cluster, every request through a round-robin balancer without
// stickiness: nonces minted by one node are redeemed through another,
// objects made through one are read through the next.

// acmeZone is the test DNS server's zone: every name in it resolves to
// 127.0.0.1, where the test's challenge servers listen.
const acmeZone = "acme.test."

// testDNS is an authoritative server for acmeZone that takes RFC 2136
// updates of TXT records, as a DNS provider's API would.
type testDNS struct {
	addr string
	// forward, while spoofed is set and true, is the address every name
	// resolves to instead of 127.0.0.1.
	forward string
	spoofed *atomic.Bool
	mu      sync.Mutex
	txt     map[string][]string // fqdn -> values
	srv     *dns.Server
}

func startTestDNS(t *testing.T) *testDNS {
	t.Helper()
	d := &testDNS{addr: freeport.For(t), txt: map[string][]string{}}
	d.srv = &dns.Server{Addr: d.addr, Net: "udp", Handler: dns.HandlerFunc(d.serve),
		MsgAcceptFunc: func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept }} // updates too
	started := make(chan error, 1)
	d.srv.NotifyStartedFunc = func() { started <- nil }
	go func() {
		if err := d.srv.ListenAndServe(); err != nil {
			started <- err
		}
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.srv.Shutdown() })
	return d
}

func (d *testDNS) serve(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if r.Opcode == dns.OpcodeUpdate {
		d.update(r)
		w.WriteMsg(m)
		return
	}
	for _, q := range r.Question {
		name := strings.ToLower(q.Name)
		if !dns.IsSubDomain(acmeZone, name) {
			m.Rcode = dns.RcodeRefused
			continue
		}
		switch q.Qtype {
		case dns.TypeA:
			ip := net.IPv4(127, 0, 0, 1)
			d.mu.Lock()
			if d.spoofed != nil && d.spoofed.Load() {
				ip = net.ParseIP(d.forward)
			}
			d.mu.Unlock()
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: ip})
		case dns.TypeTXT:
			d.mu.Lock()
			for _, v := range d.txt[name] {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1}, Txt: []string{v}})
			}
			d.mu.Unlock()
		case dns.TypeSOA:
			if name == acmeZone {
				m.Answer = append(m.Answer, d.soa())
			} else {
				m.Ns = append(m.Ns, d.soa())
			}
		default:
			m.Ns = append(m.Ns, d.soa())
		}
	}
	w.WriteMsg(m)
}

func (d *testDNS) soa() dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: acmeZone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 1},
		Ns: "ns." + acmeZone, Mbox: "hostmaster." + acmeZone, Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 1}
}

// update applies an RFC 2136 update's TXT additions and deletions.
func (d *testDNS) update(r *dns.Msg) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, rr := range r.Ns {
		txt, ok := rr.(*dns.TXT)
		if !ok {
			continue
		}
		name := strings.ToLower(txt.Hdr.Name)
		switch txt.Hdr.Class {
		case dns.ClassINET:
			d.txt[name] = append(d.txt[name], strings.Join(txt.Txt, ""))
		case dns.ClassNONE, dns.ClassANY:
			var keep []string
			for _, v := range d.txt[name] {
				if txt.Hdr.Class == dns.ClassNONE && v != strings.Join(txt.Txt, "") {
					keep = append(keep, v)
				}
			}
			d.txt[name] = keep
		}
	}
}

// dnsUpdateProvider is a lego DNS provider that sends RFC 2136 updates to
// the test's DNS server.
type dnsUpdateProvider struct{ server string }

func (p dnsUpdateProvider) send(ctx context.Context, domain, keyAuth string, class uint16) error {
	info := dns01.GetChallengeInfo(ctx, domain, keyAuth)
	m := new(dns.Msg)
	m.SetUpdate(acmeZone)
	rr := &dns.TXT{Hdr: dns.RR_Header{Name: info.EffectiveFQDN, Rrtype: dns.TypeTXT, Class: class, Ttl: 1}, Txt: []string{info.Value}}
	m.Ns = append(m.Ns, rr)
	in, err := dns.Exchange(m, p.server)
	if err != nil {
		return err
	}
	if in.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("dns update: %s", dns.RcodeToString[in.Rcode])
	}
	return nil
}

func (p dnsUpdateProvider) Present(ctx context.Context, domain, _, keyAuth string) error {
	return p.send(ctx, domain, keyAuth, dns.ClassINET)
}

func (p dnsUpdateProvider) CleanUp(ctx context.Context, domain, _, keyAuth string) error {
	return p.send(ctx, domain, keyAuth, dns.ClassNONE)
}

// legoUser is a lego account.
type legoUser struct {
	key crypto.Signer
	reg *legoacme.ExtendedAccount
}

func (u *legoUser) GetEmail() string                           { return "ops@acme.test" }
func (u *legoUser) GetRegistration() *legoacme.ExtendedAccount { return u.reg }
func (u *legoUser) GetPrivateKey() crypto.Signer               { return u.key }

// acmeEnv is a cluster serving ACME behind a round-robin balancer, with a
// DNS server and challenge ports for the clients.
type acmeEnv struct {
	c   *testCluster
	dns *testDNS
	lb  string // host:port of the balancer
	// l7 is an address for an HTTP balancer a test may start (HAProxy):
	// the nodes take it as one of their public URLs.
	l7                string
	httpPort, tlsPort string
}

// newACMEEnv starts it; each of more adjusts every node's config.
func newACMEEnv(t *testing.T, nodes int, more ...func(*Config)) *acmeEnv {
	t.Helper()
	e := &acmeEnv{dns: startTestDNS(t), lb: freeport.For(t), l7: freeport.For(t)}
	_, e.httpPort, _ = net.SplitHostPort(freeport.For(t))
	_, e.tlsPort, _ = net.SplitHostPort(freeport.For(t))
	var httpPort, tlsPort int
	fmt.Sscan(e.httpPort, &httpPort)
	fmt.Sscan(e.tlsPort, &tlsPort)
	pol := fsm.Policy{DNS: []string{".acme.test", "acme.test"}, IP: []string{"127.0.0.0/8"}, AllowWildcard: true,
		DefaultTTL: 24 * time.Hour, MaxTTL: 90 * 24 * time.Hour, EKU: "server"}
	e.c = newTestClusterWith(t, nodes, cluster.FastTiming(), func(c *testCluster) {
		c.provisioners = []*ProvisionerConfig{
			{Provisioner: fsm.Provisioner{Name: "acme", Kind: fsm.KindACME, Authority: authority.DefaultAuthority, Policy: pol}},
			{Provisioner: fsm.Provisioner{Name: "acme-eab", Kind: fsm.KindACME, Authority: authority.DefaultAuthority, Policy: pol,
				ACME: &fsm.ACMEOptions{RequireEAB: true}}},
		}
		c.configure = func(cfg *Config) {
			cfg.APIPublicURLs = []string{"https://" + e.lb, "https://" + e.l7}
			cfg.ACME = acme.ValidatorConfig{Resolvers: []string{e.dns.addr}, HTTP01Port: httpPort, TLSALPNPort: tlsPort}
			for _, f := range more {
				f(cfg)
			}
		}
	})
	// The balancer: each connection to the next node, no stickiness.
	lb := &tcpProxy{t: t, addr: e.lb, conns: map[net.Conn]bool{}, backends: func() []string {
		var addrs []string
		for _, tn := range e.c.running() {
			addrs = append(addrs, tn.node.APIAddr())
		}
		return addrs
	}}
	lb.Start()
	t.Cleanup(lb.Stop)
	return e
}

// client is a lego client of the provisioner's directory, through the
// balancer, a new connection per request so that requests spread.
func (e *acmeEnv) client(t *testing.T, prov string, key crypto.Signer) (*lego.Client, *legoUser) {
	t.Helper()
	if key == nil {
		var err error
		if key, err = certcrypto.GeneratePrivateKey(certcrypto.EC256); err != nil {
			t.Fatal(err)
		}
	}
	u := &legoUser{key: key}
	cfg := lego.NewConfig(u)
	cfg.CADirURL = "https://" + e.lb + "/acme/" + prov + "/directory"
	tr := e.c.client.Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: tr}
	cfg.Certificate.Timeout = 30 * time.Second
	cl, err := lego.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl, u
}

func (e *acmeEnv) useHTTP01(t *testing.T, cl *lego.Client) {
	t.Helper()
	cl.Challenge.ResetSolvers()
	if err := cl.Challenge.SetHTTP01Provider(http01.NewProviderServer("127.0.0.1", e.httpPort)); err != nil {
		t.Fatal(err)
	}
}

func (e *acmeEnv) useTLSALPN01(t *testing.T, cl *lego.Client) {
	t.Helper()
	cl.Challenge.ResetSolvers()
	if err := cl.Challenge.SetTLSALPN01Provider(tlsalpn01.NewProviderServer("127.0.0.1", e.tlsPort)); err != nil {
		t.Fatal(err)
	}
}

func (e *acmeEnv) useDNS01(t *testing.T, cl *lego.Client) {
	t.Helper()
	cl.Challenge.ResetSolvers()
	err := cl.Challenge.SetDNS01Provider(dnsUpdateProvider{server: e.dns.addr},
		dns01.PropagationWait(0, true)) // the test's server answers at once
	if err != nil {
		t.Fatal(err)
	}
}

func register(t *testing.T, cl *lego.Client, u *legoUser) {
	t.Helper()
	reg, err := cl.Registration.Register(context.Background(), registration.RegisterOptions{TermsOfServiceAgreed: true})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	u.reg = reg
}

// obtained parses lego's result and checks it against the dev root.
func (e *acmeEnv) obtained(t *testing.T, res *certificate.Resource, names ...string) *x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	rest := res.Certificate
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) < 2 {
		t.Fatalf("want the certificate with its chain, got %d certificates", len(certs))
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(e.c.pki.Root())
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	leaf := certs[0]
	for _, n := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: strings.TrimPrefix(n, "*."),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil && net.ParseIP(n) == nil {
			t.Fatalf("certificate for %s does not verify: %v", n, err)
		}
	}
	got := append(append([]string{}, leaf.DNSNames...), ipStrings(leaf.IPAddresses)...)
	if strings.Join(sorted(got), ",") != strings.Join(sorted(names), ",") {
		t.Fatalf("certificate names %v, want %v", got, names)
	}
	return leaf
}

func ipStrings(ips []net.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

func TestACMEWithLegoThroughARoundRobinBalancer(t *testing.T) {
	e := newACMEEnv(t, 3)
	ctx := context.Background()
	cl, u := e.client(t, "acme", nil)
	register(t, cl, u)

	t.Run("http-01", func(t *testing.T) {
		e.useHTTP01(t, cl)
		res, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"a.acme.test", "b.acme.test"}, Bundle: true, KeyType: certcrypto.EC256})
		if err != nil {
			t.Fatal(err)
		}
		leaf := e.obtained(t, res, "a.acme.test", "b.acme.test")
		e.expectRecord(t, leaf, u)
	})
	t.Run("tls-alpn-01", func(t *testing.T) {
		e.useTLSALPN01(t, cl)
		res, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"c.acme.test"}, Bundle: true, KeyType: certcrypto.EC256})
		if err != nil {
			t.Fatal(err)
		}
		e.obtained(t, res, "c.acme.test")
	})
	t.Run("dns-01 with a wildcard", func(t *testing.T) {
		e.useDNS01(t, cl)
		res, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"*.acme.test", "acme.test"}, Bundle: true, KeyType: certcrypto.EC256})
		if err != nil {
			t.Fatal(err)
		}
		e.obtained(t, res, "*.acme.test", "acme.test")
	})
	t.Run("a name the provisioner does not allow", func(t *testing.T) {
		e.useHTTP01(t, cl)
		_, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"a.example.com"}, Bundle: true, KeyType: certcrypto.EC256})
		if err == nil || !strings.Contains(err.Error(), acme.ProblemPrefix+acme.ProbRejectedIdentifier) {
			t.Fatalf("want rejectedIdentifier, got %v", err)
		}
	})
	t.Run("a challenge nobody answers", func(t *testing.T) {
		cl.Challenge.ResetSolvers()
		// The provider presents nothing: the validation fails, and the
		// order with it.
		if err := cl.Challenge.SetHTTP01Provider(silentProvider{}); err != nil {
			t.Fatal(err)
		}
		_, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"d.acme.test"}, Bundle: true, KeyType: certcrypto.EC256})
		if err == nil || !strings.Contains(err.Error(), acme.ProblemPrefix+acme.ProbConnection) {
			t.Fatalf("want a connection problem, got %v", err)
		}
	})
	t.Run("revocation by the account", func(t *testing.T) {
		e.useHTTP01(t, cl)
		res, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"r.acme.test"}, Bundle: true, KeyType: certcrypto.EC256})
		if err != nil {
			t.Fatal(err)
		}
		leaf := e.obtained(t, res, "r.acme.test")
		if err := cl.Certificate.Revoke(ctx, res.Certificate); err != nil {
			t.Fatal(err)
		}
		e.expectRevoked(t, leaf)
		if err := cl.Certificate.Revoke(ctx, res.Certificate); err == nil || !strings.Contains(err.Error(), acme.ProbAlreadyRevoked) {
			t.Fatalf("second revocation: want alreadyRevoked, got %v", err)
		}
		// Another account may not revoke it.
		other, ou := e.client(t, "acme", nil)
		register(t, other, ou)
		res2, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"r2.acme.test"}, Bundle: true, KeyType: certcrypto.EC256})
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Certificate.Revoke(ctx, res2.Certificate); err == nil || !strings.Contains(err.Error(), acme.ProbUnauthorized) {
			t.Fatalf("revocation by another account: want unauthorized, got %v", err)
		}
	})
	t.Run("key rollover", func(t *testing.T) {
		newKey, err := certcrypto.GeneratePrivateKey(certcrypto.EC256)
		if err != nil {
			t.Fatal(err)
		}
		oldKey := u.key
		if err := cl.Registration.KeyRollover(ctx, newKey); err != nil {
			t.Fatal(err)
		}
		// The account answers to its new key only.
		nc, nu := e.client(t, "acme", newKey)
		acc, err := nc.Registration.ResolveAccountByKey(ctx)
		if err != nil || acc.Location != u.reg.Location {
			t.Fatalf("the new key finds %v (%v), want %s", acc, err, u.reg.Location)
		}
		nu.reg = acc
		e.useHTTP01(t, nc)
		res, err := nc.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"k.acme.test"}, Bundle: true, KeyType: certcrypto.EC256})
		if err != nil {
			t.Fatal(err)
		}
		e.obtained(t, res, "k.acme.test")
		oc, _ := e.client(t, "acme", oldKey)
		if _, err := oc.Registration.ResolveAccountByKey(ctx); err == nil {
			t.Fatal("the old key still finds the account")
		}
	})
	t.Run("deactivated account", func(t *testing.T) {
		dc, du := e.client(t, "acme", nil)
		register(t, dc, du)
		if err := dc.Registration.DeleteRegistration(ctx); err != nil {
			t.Fatal(err)
		}
		e.useHTTP01(t, dc)
		_, err := dc.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"x.acme.test"}, Bundle: true, KeyType: certcrypto.EC256})
		if err == nil || !strings.Contains(err.Error(), acme.ProbUnauthorized) {
			t.Fatalf("want unauthorized for a deactivated account, got %v", err)
		}
	})
}

func TestACMEExternalAccountBinding(t *testing.T) {
	e := newACMEEnv(t, 1)
	ctx := context.Background()
	mint := func() (string, string) {
		r := e.c.do(e.c.nodes[0], "POST", "/v1/admin/acme/eab", map[string]any{"provisioner": "acme-eab", "reference": "team-a"}, e.c.admin)
		if r.status != http.StatusCreated {
			t.Fatalf("mint eab: %d %s", r.status, r.body)
		}
		var out struct{ ID, Key string }
		r.decode(t, &out)
		return out.ID, out.Key
	}
	cl, u := e.client(t, "acme-eab", nil)
	if _, err := cl.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true}); err == nil ||
		!strings.Contains(err.Error(), acme.ProbExternalAccountRequired) {
		t.Fatalf("without a binding: want externalAccountRequired, got %v", err)
	}
	kid, hmac := mint()
	reg, err := cl.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: kid, HmacEncoded: hmac})
	if err != nil {
		t.Fatal(err)
	}
	u.reg = reg
	e.useHTTP01(t, cl)
	res, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"eab.acme.test"}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatal(err)
	}
	e.obtained(t, res, "eab.acme.test")

	// The key binds one account only.
	other, _ := e.client(t, "acme-eab", nil)
	if _, err := other.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: kid, HmacEncoded: hmac}); err == nil {
		t.Fatal("an EAB key bound a second account")
	}
	// A MAC made with another key is refused.
	kid2, _ := mint()
	_, wrong := mint()
	if _, err := other.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: kid2, HmacEncoded: wrong}); err == nil {
		t.Fatal("an EAB MAC made with another key was accepted")
	}
	// A revoked key binds nothing.
	kid3, hmac3 := mint()
	if r := e.c.do(e.c.nodes[0], "DELETE", "/v1/admin/acme/eab/"+kid3, nil, e.c.admin); r.status != http.StatusNoContent {
		t.Fatalf("revoke eab: %d %s", r.status, r.body)
	}
	if _, err := other.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{TermsOfServiceAgreed: true, Kid: kid3, HmacEncoded: hmac3}); err == nil {
		t.Fatal("a revoked EAB key bound an account")
	}
}

// silentProvider presents nothing.
type silentProvider struct{}

func (silentProvider) Present(context.Context, string, string, string) error { return nil }
func (silentProvider) CleanUp(context.Context, string, string, string) error { return nil }

// expectRecord checks the certificate's record: ordered by the account.
func (e *acmeEnv) expectRecord(t *testing.T, leaf *x509.Certificate, u *legoUser) {
	t.Helper()
	serial := authority.SerialHex(leaf.SerialNumber)
	r := e.c.do(e.c.nodes[0], "GET", "/v1/admin/certs?provisioner=acme", nil, e.c.admin)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), serial) {
		t.Fatalf("record of %s: %d %s", serial, r.status, r.body)
	}
	id := u.reg.Location[strings.LastIndex(u.reg.Location, "/")+1:]
	if !strings.Contains(string(r.body), authority.ACMERequester("acme", id)) {
		t.Fatalf("record of %s does not name the account %s: %s", serial, id, r.body)
	}
}

func (e *acmeEnv) expectRevoked(t *testing.T, leaf *x509.Certificate) {
	t.Helper()
	for _, tn := range e.c.running() {
		r := e.c.do(tn, "GET", "/v1/certs/"+authority.SerialHex(leaf.SerialNumber), nil, "")
		if r.status != http.StatusOK || !strings.Contains(string(r.body), `"revoked"`) {
			t.Fatalf("%s: certificate not revoked: %d %s", tn.cfg.NodeName, r.status, r.body)
		}
	}
}

// ARI (RFC 9773): lego reads the window from renewalInfo; the JSON API
// gives the same; a revocation moves it to now; "replaces" links the
// lineage once.
func TestACMERenewalInformation(t *testing.T) {
	e := newACMEEnv(t, 3)
	ctx := context.Background()
	cl, u := e.client(t, "acme", nil)
	register(t, cl, u)
	e.useHTTP01(t, cl)
	res, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"ari.acme.test"}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatal(err)
	}
	leaf := e.obtained(t, res, "ari.acme.test")
	ri, err := cl.Certificate.GetRenewalInfo(ctx, leaf)
	if err != nil {
		t.Fatal(err)
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	start, end := ri.SuggestedWindow.Start, ri.SuggestedWindow.End
	if start.Before(leaf.NotBefore.Add(life/2)) || end.After(leaf.NotBefore.Add(life*8/10)) || !end.After(start) {
		t.Fatalf("window %s-%s for a certificate of %s-%s", start, end, leaf.NotBefore, leaf.NotAfter)
	}
	serial := authority.SerialHex(leaf.SerialNumber)
	r := e.c.do(e.c.nodes[1], "GET", "/v1/certs/"+serial+"/renewal-info", nil, "")
	var js struct {
		SuggestedWindow struct{ Start, End time.Time }
	}
	r.decode(t, &js)
	if r.status != http.StatusOK || !js.SuggestedWindow.Start.Equal(start) || !js.SuggestedWindow.End.Equal(end) || r.header.Get("Retry-After") == "" {
		t.Fatalf("JSON API renewal info %d %s %v, want the ACME window %s-%s", r.status, r.body, r.header, start, end)
	}

	// Renewal that names the certificate it replaces, once.
	renewed, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"ari.acme.test"}, Bundle: true,
		KeyType: certcrypto.EC256, ReplacesCertID: ariCertID(t, leaf)})
	if err != nil {
		t.Fatal(err)
	}
	next := e.obtained(t, renewed, "ari.acme.test")
	r = e.c.do(e.c.nodes[2], "GET", "/v1/certs/"+authority.SerialHex(next.SerialNumber), nil, "")
	if !strings.Contains(string(r.body), `"renewed_from": "`+serial+`"`) {
		t.Fatalf("the replacement's record does not name %s: %s", serial, r.body)
	}
	// A second replacement of the same certificate is refused with
	// alreadyReplaced, after which lego orders without "replaces" (RFC
	// 9773 section 7.4 lets it): that certificate claims no lineage.
	again, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"ari.acme.test"}, Bundle: true,
		KeyType: certcrypto.EC256, ReplacesCertID: ariCertID(t, leaf)})
	if err != nil {
		t.Fatal(err)
	}
	r = e.c.do(e.c.nodes[0], "GET", "/v1/certs/"+authority.SerialHex(e.obtained(t, again, "ari.acme.test").SerialNumber), nil, "")
	if strings.Contains(string(r.body), `"renewed_from"`) {
		t.Fatalf("a second replacement of %s was accepted: %s", serial, r.body)
	}

	// Revoked: renew now.
	if r := e.c.do(e.c.nodes[0], "POST", "/v1/admin/certs/"+authority.SerialHex(next.SerialNumber)+"/revoke", map[string]string{"reason": "keyCompromise"}, e.c.admin); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	ri, err = cl.Certificate.GetRenewalInfo(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	if !ri.SuggestedWindow.End.Before(time.Now()) {
		t.Fatalf("a revoked certificate's window %s-%s is not in the past", ri.SuggestedWindow.Start, ri.SuggestedWindow.End)
	}
	// A certificate id whose key identifier is not the issuer's is unknown.
	bad := strings.Replace(ariCertID(t, leaf), ariCertID(t, leaf)[:4], "AAAA", 1)
	r = e.c.do(e.c.nodes[0], "GET", "/acme/acme/renewal-info/"+bad, nil, "")
	if r.status != http.StatusNotFound || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("renewal info for a foreign key identifier: %d %s", r.status, r.body)
	}
}

// ariCertID is RFC 9773's certificate id.
func ariCertID(t *testing.T, c *x509.Certificate) string {
	t.Helper()
	return base64.RawURLEncoding.EncodeToString(c.AuthorityKeyId) + "." + base64.RawURLEncoding.EncodeToString(c.SerialNumber.Bytes())
}

// Multi-perspective validation: with perspectives = 2, a node whose
// resolver is spoofed (its zone sees another address for the name) makes
// the challenge fail wherever it is validated; with every zone seeing
// the same answer it passes; with fewer zones than asked, nothing is
// committed and the client may try again.
func TestACMEValidationFromSeveralZones(t *testing.T) {
	spoof := startTestDNS(t)
	var spoofed atomic.Bool
	spoof.mu.Lock()
	spoof.forward, spoof.spoofed = "127.0.0.2", &spoofed // every name resolves elsewhere, once spoofed
	spoof.mu.Unlock()
	zones := map[string]string{"n1": "zone-a", "n2": "zone-b", "n3": "zone-c"}
	e := newACMEEnv(t, 3, func(cfg *Config) {
		cfg.ACME.Perspectives, cfg.ACME.Zone = 2, zones[cfg.NodeName]
		if cfg.NodeName == "n3" {
			// Its resolver answers as the real one, until the test spoofs it.
			cfg.ACME.Resolvers = []string{spoof.addr}
		}
	})
	ctx := context.Background()
	cl, u := e.client(t, "acme", nil)
	register(t, cl, u)
	e.useHTTP01(t, cl)
	if _, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"mp1.acme.test"}, Bundle: true, KeyType: certcrypto.EC256}); err != nil {
		t.Fatalf("every zone sees the answer: %v", err)
	}
	spoofed.Store(true)
	for _, name := range []string{"mp2.acme.test", "mp3.acme.test", "mp4.acme.test"} {
		_, err := cl.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{name}, Bundle: true, KeyType: certcrypto.EC256})
		if err == nil || !strings.Contains(err.Error(), acme.ProbConnection) {
			t.Fatalf("%s: zone-c sees another address; want the challenge to fail, got %v", name, err)
		}
	}
}

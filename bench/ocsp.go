package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"golang.org/x/crypto/ocsp"
)

// ocspSources is how many loopback addresses the harness asks OCSP from.
// Relying parties ask from many addresses, and each address has a budget
// (100/s by default): asked from one, the run would measure the limiter.
const ocspSources = 250

// ocspClients are kept-alive HTTP/1.1 clients. Against a loopback address
// each dials from its own one, 127.0.1.1 up; elsewhere they share the
// machine's address.
func ocspClients(cfg Config, base *tls.Config, addrs []string) []*http.Client {
	loopback := true
	for _, a := range addrs {
		u, err := url.Parse(a)
		ip := net.ParseIP(u.Hostname())
		if err != nil || ip == nil || !ip.IsLoopback() || ip.To4() == nil {
			loopback = false
		}
	}
	n := 1
	if loopback {
		n = ocspSources
	}
	clients := make([]*http.Client, n)
	for i := range clients {
		d := &net.Dialer{Timeout: cfg.Timeout}
		if loopback {
			d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(i+1))}
		}
		clients[i] = &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{
			TLSClientConfig: base, DialContext: d.DialContext,
			MaxIdleConnsPerHost: cfg.Concurrency, MaxIdleConns: cfg.Concurrency * len(addrs),
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		}}
	}
	return clients
}

// makeOCSPRequest prepares d's OCSP request (enrollment phase, not measured).
func (d *device) makeOCSPRequest(s *signReply) string {
	var issuer *x509.Certificate
	if len(s.Chain) > 0 {
		if b, _ := pem.Decode([]byte(s.Chain[0])); b != nil {
			issuer, _ = x509.ParseCertificate(b.Bytes)
		}
	}
	leaf, err := x509.ParseCertificate(d.cert.Certificate[0])
	if err != nil || issuer == nil {
		return "bad_reply"
	}
	if d.ocsp, err = ocsp.CreateRequest(leaf, issuer, nil); err != nil {
		return "ocsp_request"
	}
	return ""
}

// askOCSP asks for d's status. It checks the response status only: a
// signature check would spend the CA's cores on the harness.
func (f *fleet) askOCSP(ctx context.Context, d *device) string {
	if d.ocsp == nil {
		return "not_enrolled"
	}
	c := f.ocspC[d.n%len(f.ocspC)]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.addr+"/v1/ocsp", bytes.NewReader(d.ocsp))
	if err != nil {
		return "request"
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := c.Do(req)
	if err != nil {
		return TransportCode(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return TransportCode(err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("http_%d", resp.StatusCode)
	}
	var r struct {
		Status asn1.Enumerated
		Rest   asn1.RawValue `asn1:"optional,explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(body, &r); err != nil {
		return "bad_reply"
	}
	if r.Status != 0 {
		return fmt.Sprintf("ocsp_status_%d", r.Status)
	}
	return ""
}

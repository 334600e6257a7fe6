package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/quorumca/quorumca/scep"
)

// SCEP enrollment (RFC 8894 PKCSReq): the token as the CSR's challenge
// password, the request encrypted to the RA and signed with a self-signed
// certificate, all made before the measured phase; the reply is checked
// (signed by the RA, for this transaction, a success) and, when renewals
// follow, opened for the certificate.

func (f *fleet) scepPath() string {
	p := f.cfg.Provisioner
	if p == "" {
		p = "default"
	}
	return "/scep/" + url.PathEscape(p) + "?operation="
}

// scepCACert fetches the RA's and CA's certificates once.
func (f *fleet) scepCACert(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.addrs[0]+f.scepPath()+"GetCACert", nil)
	if err != nil {
		return err
	}
	resp, err := f.enrollC.Do(req)
	if err != nil {
		return fmt.Errorf("scep GetCACert: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scep GetCACert: %d %s (does the authority have a SCEP RA?)", resp.StatusCode, body)
	}
	f.scepRA, err = scep.ParseCACerts(body)
	return err
}

func (f *fleet) prepareSCEP(d *device) error {
	self, err := scep.SelfSigned(d.key, d.name)
	if err != nil {
		return err
	}
	csr, err := scep.CSRWithChallenge(&x509.CertificateRequest{Subject: pkix.Name{CommonName: d.name}, DNSNames: []string{d.name}}, d.key, d.token)
	if err != nil {
		return err
	}
	d.sent, err = scep.NewRequest(scep.PKCSReq, csr, f.scepRA[0], self, d.key, fmt.Sprintf("bench-%d-%s", d.n, d.name))
	if err == nil {
		d.enroll = d.sent.Message
	}
	return err
}

func (f *fleet) enrollSCEP(ctx context.Context, d *device) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.addr+f.scepPath()+"PKIOperation", bytes.NewReader(d.enroll))
	if err != nil {
		return "request"
	}
	req.Header.Set("Content-Type", "application/x-pki-message")
	data, code := exchange(f.enrollC, req)
	if code != "" {
		return code
	}
	read := d.sent.Check
	if f.cfg.Renew {
		read = d.sent.ReadReply // renewals need the certificate
	}
	out, err := read(data, f.scepRA)
	switch {
	case err != nil:
		return "bad_reply"
	case out.FailInfo != "":
		return "scep_fail_" + out.FailInfo
	}
	d.enroll = nil
	if f.cfg.Renew {
		if len(out.Certs) == 0 {
			return "bad_reply"
		}
		cert, err := x509.ParseCertificate(out.Certs[0])
		if err != nil {
			return "bad_reply"
		}
		d.cert = &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: d.key}
	}
	return ""
}

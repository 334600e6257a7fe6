package chaos

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"time"
)

// Factory devices: a sixth of the fleet enrolls by a factory certificate
// under a manufacturer's CA (an x5c provisioner with an allow-list), not
// a token. Each listed device ID is a credential that, like a token,
// yields one certificate whichever node gets it; the history names it
// "device:<id>" where a token's ID goes, so the checker holds it to the
// same rule.

const x5cProvisioner = "factory"

// manufacturer is the workload's device maker: a root that signs each
// device's factory certificate.
type manufacturer struct {
	root *x509.Certificate
	key  *ecdsa.PrivateKey
	ids  []string // listed device IDs not handed out yet
}

// x5cSetUp creates the x5c provisioner and lists n device IDs (before the
// faults, like the tokens).
func (w *workload) x5cSetUp(ctx context.Context, n int, run string) error {
	m := &manufacturer{key: newKey()}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chaos manufacturer root"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, m.key.Public(), m.key)
	if err != nil {
		return err
	}
	if m.root, err = x509.ParseCertificate(der); err != nil {
		return err
	}
	prov := map[string]any{"name": x5cProvisioner, "kind": "x5c", "authority": "default",
		"policy": map[string]any{"dns": []string{".devices.chaos.test"}, "default_ttl": "24h", "max_ttl": "72h",
			"key_types": []string{"P-256"}, "eku": "client", "renew_grace": "1h"},
		"x5c": map[string]any{"roots": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
			"names": []string{"{serial}.factory.devices.chaos.test"}, "allow_list": true}}
	if err := w.adminPost(ctx, "/v1/admin/provisioners", prov, http.StatusCreated); err != nil {
		return err
	}
	for i := range n {
		m.ids = append(m.ids, fmt.Sprintf("%s-f%d", run, i+1)) // lowercase, as the CA keeps IDs
	}
	if err := w.adminPost(ctx, "/v1/admin/provisioners/"+x5cProvisioner+"/devices", map[string]any{"ids": m.ids}, http.StatusOK); err != nil {
		return err
	}
	w.factory = m
	return nil
}

// adminPost sends an admin request outside the fault path.
func (w *workload) adminPost(ctx context.Context, path string, body any, want int) error {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, "POST", w.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+w.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: time.Minute, Transport: w.adminC.Transport}).Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, data)
	}
	return nil
}

// takeDevice hands out the next listed device: its factory certificate
// and key, as a token whose ID is "device:<id>"; nil when none is left.
func (w *workload) takeDevice() *token {
	w.mu.Lock()
	m := w.factory
	if m == nil || len(m.ids) == 0 {
		w.mu.Unlock()
		return nil
	}
	id := m.ids[len(m.ids)-1]
	m.ids = m.ids[:len(m.ids)-1]
	w.mu.Unlock()
	key := newKey()
	serial, _ := crand.Int(crand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "chaos device", SerialNumber: id},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, m.root, key.Public(), m.key)
	if err != nil {
		panic(err)
	}
	return &token{id: "device:" + id, sans: []string{strings.ToLower(id) + ".factory.devices.chaos.test"},
		factory: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// x5cSign asks for a certificate for key as the factory device of t.
func (w *workload) x5cSign(t *token, key *ecdsa.PrivateKey) reply {
	return w.post(w.devC, "/v1/sign", "", map[string]string{"csr": csrPEM(key, t.sans), "provisioner": x5cProvisioner}, t.factory)
}

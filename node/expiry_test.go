package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// A root certified twice for one key is one series (the later expiry), and
// an issuer certificate that does not parse is left out, not the scrape.
func TestMetricsExpiryOneSeriesPerKey(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second) // as certificates hold it
	root := func(notAfter time.Time) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(notAfter.Unix()), Subject: pkix.Name{CommonName: "root"},
			NotBefore: now.Add(-time.Hour), NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	a := fsm.Authority{Name: "a", Root: root(now.Add(time.Hour)), AddedRoots: [][]byte{root(now.Add(2 * time.Hour))},
		Issuers: []fsm.Issuer{{ID: "broken", Chain: [][]byte{[]byte("not DER")}, KeyURI: "awskms:k", Active: true}}}
	env, err := fsm.NewEnvelope(fsm.CmdAuthorityPut, "r1", a)
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	state, err := fsm.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	if res := state.ApplyBatch([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand, Data: data}}); res[0] != nil {
		t.Fatal(res[0])
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(newExpiryCollector(state, func() time.Time { return now }))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(a.Root)
	id := "root-" + authority.IssuerID(cert)
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.Metric {
			if f.GetName() == "quorumca_ca_cert_expiry_seconds" {
				for _, l := range m.Label {
					if l.GetName() == "issuer" {
						got[l.GetValue()] = m.Gauge.GetValue()
					}
				}
			}
		}
	}
	if len(got) != 1 || got[id] != 7200 {
		t.Fatalf("series %v, want %s at 7200", got, id)
	}
}

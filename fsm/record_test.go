package fsm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// leafDERs are n leaves of one issuer, as production issues them: a name,
// OCSP, issuer and CRL URLs, key usages.
func leafDERs(t *testing.T, n int) [][]byte {
	t.Helper()
	ik, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	itmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuing CA", Organization: []string{"quorumca"}},
		NotBefore: t0, NotAfter: t0.Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	ider, err := x509.CreateCertificate(rand.Reader, itmpl, itmpl, ik.Public(), ik)
	if err != nil {
		t.Fatal(err)
	}
	iss, _ := x509.ParseCertificate(ider)
	var out [][]byte
	for i := range n {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		name := fmt.Sprintf("d%d.fleet.example", i)
		base := "http://ca.example:8080/v1/authorities/default/issuers/3f9a0c1b2d4e5f60"
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(int64(1000 + i)),
			Subject: pkix.Name{CommonName: name}, DNSNames: []string{name}, NotBefore: t0, NotAfter: t0.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			OCSPServer: []string{"http://ca.example:8080/v1/ocsp"}, IssuingCertificateURL: []string{base + "/issuer.crt"},
			CRLDistributionPoints: []string{base + "/crl"}}, iss, k.Public(), ik)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, der)
	}
	return out
}

// inTx runs fn in a write transaction of f, as Apply does.
func inTx(t *testing.T, f *FSM, fn func(a *applyCtx)) {
	t.Helper()
	if err := f.db.Update(func(tx *bolt.Tx) error {
		fn(&applyCtx{f: f, tx: tx, bt: &batchTx{f: f, tx: tx}})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Every field of a certificate record survives the binary layout, the
// serial coming from the key; a subject that is "CN=" and the first name
// is not stored, any other is; the first DER of an issuer becomes its
// dictionary, later ones are stored compressed against it, and come back
// whole; JSON records still read; damaged records do not.
func TestRecordsRoundTripEveryField(t *testing.T) {
	f := openTest(t)
	ders := leafDERs(t, 3)
	var c Cert
	fill(t, reflect.ValueOf(&c).Elem(), "Cert", nil)
	var sizes []int
	for i, subject := range []string{c.Subject, "CN=" + c.SANs[0], "CN=" + c.SANs[0] + ",O=x", ""} {
		c.Subject, c.DER = subject, ders[min(i, 2)]
		var enc []byte
		inTx(t, f, func(a *applyCtx) { enc = encodeRecord(a, &c) })
		sizes = append(sizes, len(enc))
		var back Cert
		if err := f.view(func(tx *bolt.Tx) error { return f.decodeRecord(tx, []byte(c.Serial), enc, &back) }); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("subject %q: the record lost a field:\n got %+v\nwant %+v", subject, back, c)
		}
		js, _ := json.Marshal(&c)
		var fromJSON Cert
		if err := f.decodeRecord(nil, []byte(c.Serial), js, &fromJSON); err != nil || !reflect.DeepEqual(fromJSON, c) {
			t.Errorf("a JSON record: %v", err)
		}
	}
	// The first (the dictionary) as it is, the others compressed.
	if sizes[0] < len(ders[0]) || sizes[1] > sizes[0]-len(ders[1])/2 {
		t.Errorf("record sizes %v for DERs of %d bytes", sizes, len(ders[1]))
	}
	var good []byte
	inTx(t, f, func(a *applyCtx) { good = encodeRecord(a, &c) })
	flipped := bytes.Clone(good)
	flipped[len(flipped)-20] ^= 0xff // in the compressed DER
	for _, bad := range [][]byte{nil, {recordMarker}, {recordMarker, 9, 0}, {recordMarker, recordVersion, 0x80}, append(bytes.Clone(good), 0), flipped} {
		var back Cert
		err := f.view(func(tx *bolt.Tx) error { return f.decodeRecord(tx, []byte("01"), bad, &back) })
		if err == nil && bytes.Equal(back.DER, c.DER) {
			t.Errorf("%x decoded", bad)
		}
	}
}

// Records are JSON until the log_format entry, binary from it on, on
// every node alike however the entries were batched (the workload marks
// the format halfway through its issuances).
func TestRecordsTurnBinaryAtTheFormatMark(t *testing.T) {
	logs := workload(t)
	var digest string
	for _, size := range []int{1, 3, len(logs)} {
		f := openTest(t)
		for i := 0; i < len(logs); i += size {
			f.ApplyBatch(logs[i:min(i+size, len(logs))])
		}
		f.view(func(tx *bolt.Tx) error {
			for i := range 20 {
				v := tx.Bucket(bCerts).Get([]byte(fmt.Sprintf("%x", 1000+i)))
				// 1003 is revoked after the mark: written again, binary.
				if binary := v[0] == recordMarker; binary != (i >= 10 || i == 3) {
					t.Errorf("batches of %d: record %d binary %v", size, i, binary)
				}
			}
			return nil
		})
		if c, err := f.Cert(fmt.Sprintf("%x", 1015)); err != nil || !bytes.Equal(c.DER, []byte("der-3f7")) || c.Subject != "CN=d15.example" {
			t.Errorf("batches of %d: %+v %v", size, c, err)
		}
		if digest != "" && f.Digest() != digest {
			t.Errorf("batches of %d: another state", size)
		}
		digest = f.Digest()
	}
}

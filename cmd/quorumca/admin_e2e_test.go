//go:build !agent

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	binenc "encoding/binary"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The admin CLI against a dev cluster, and audit verification of a copy of
// a node's data before and after an edit.
func TestAdminCLIAndAuditVerify(t *testing.T) {
	dir := t.TempDir()
	p, _, env := startDev(t, dir)
	cli := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, err := cli(stdin, args...)
		if err != nil {
			t.Fatalf("quorumca %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	must(`{"name": "fleet", "kind": "enrollment-token", "authority": "default",
	       "policy": {"dns": [".fleet.example"], "default_ttl": "12h"}}`, "provisioner", "create", "-f", "-")
	if out := must("", "provisioner", "list"); !strings.Contains(out, "fleet") || !strings.Contains(out, "default") {
		t.Errorf("provisioner list:\n%s", out)
	}
	// An x5c provisioner's allow-list.
	doc, _ := json.Marshal(map[string]any{"name": "factory", "kind": "x5c", "authority": "default",
		"policy": map[string]any{"dns": []string{".devices.example"}},
		"x5c":    map[string]any{"roots": selfSignedCAPEM(t), "names": []string{"{serial}.devices.example"}, "allow_list": true}})
	must(string(doc), "provisioner", "create", "-f", "-")
	if out := must("# shipment 1\nSN-1\n\nSN-2\n", "device", "add", "-provisioner", "factory", "-f", "-"); !strings.Contains(out, "listed 2 devices") {
		t.Errorf("device add:\n%s", out)
	}
	must("", "device", "revoke", "-provisioner", "factory", "SN-2")
	if out := must("", "device", "list", "-provisioner", "factory", "-format", "json"); strings.Count(out, `"id"`) != 2 || !strings.Contains(out, `"revoked": true`) {
		t.Errorf("device list:\n%s", out)
	}
	if out, err := cli("SN-2\n", "device", "add", "-provisioner", "factory", "-f", "-"); err == nil || !strings.Contains(out, "device_revoked") {
		t.Errorf("a revoked device listed again: %v\n%s", err, out)
	}
	tokFile := filepath.Join(t.TempDir(), "tokens")
	must("", "token", "create", "-sans", "dev-{n}.fleet.example", "-provisioner", "fleet", "-count", "3", "-property", "fleet=eu-1", "-out", tokFile)
	if b, _ := os.ReadFile(tokFile); len(strings.Fields(string(b))) != 3 {
		t.Errorf("token file: %q", b)
	}
	if out := must("", "token", "list", "-provisioner", "fleet", "-format", "json"); strings.Count(out, `"id"`) != 3 {
		t.Errorf("token list:\n%s", out)
	}
	if out := must("", "admin", "create", "-name", "ann", "-role", "auditor"); !strings.Contains(out, "qcat_") {
		t.Errorf("admin create:\n%s", out)
	}
	if out, err := cli("", "provisioner", "create", "-f", "-"); err == nil {
		t.Errorf("empty document accepted:\n%s", out)
	}
	if out := must("", "audit", "list", "-command", "provisioner_put"); !strings.Contains(out, "admin:bootstrap") {
		t.Errorf("audit list:\n%s", out)
	}
	if out := must("", "audit", "verify"); !strings.Contains(out, "verified") {
		t.Errorf("online verify:\n%s", out)
	}
	p.stop(t)

	state := filepath.Join(dir, "node1", "state.db")
	if out := must("", "audit", "verify", "-data-dir", filepath.Join(dir, "node1")); !strings.Contains(out, "verified") {
		t.Errorf("offline verify:\n%s", out)
	}
	// Edit one entry in a copy: the chain breaks there.
	tampered := filepath.Join(t.TempDir(), "state.db")
	copyFile(t, state, tampered)
	db, err := bolt.Open(tampered, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var k [8]byte
	binenc.BigEndian.PutUint64(k[:], 3)
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		v := bytes.Replace(b.Get(k[:]), []byte(`"outcome":"ok"`), []byte(`"outcome":"xx"`), 1)
		return b.Put(k[:], v)
	})
	db.Close()
	out, err := cli("", "audit", "verify", "-data-dir", tampered)
	if err == nil || !strings.Contains(out, "broken at entry 3") {
		t.Errorf("tampered copy: %v\n%s", err, out)
	}
}

// selfSignedCAPEM is a manufacturer's root, PEM.
func selfSignedCAPEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Acme root"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

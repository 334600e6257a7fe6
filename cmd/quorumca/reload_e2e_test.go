//go:build !agent

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/internal/testwait"
)

// A `quorumca server` process takes SIGHUP as logrotate and certificate
// renewal send it: it keeps serving, moves its audit file, serves a new API
// certificate to new connections, takes a new jwk provisioner key and a new
// log level, and keeps all of it when the config file is broken.
func TestServerReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	pki := devPKI(t, filepath.Join(dir, "pki"))
	secretFile := filepath.Join(dir, "join.secret")
	os.WriteFile(secretFile, []byte("e2e-cluster-secret-0123456789\n"), 0o600)
	base := freeBase(t, 1)
	addr := fmt.Sprintf("127.0.0.1:%d", base)
	audit := filepath.Join(dir, "audit.jsonl")
	jwkFile := filepath.Join(dir, "auto.jwk.json")
	writeJWK := func(k *ecdsa.PrivateKey) {
		b, _ := json.Marshal(jose.JSONWebKey{Key: k.Public()})
		if err := os.WriteFile(jwkFile, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	writeJWK(key1)
	config := writeServerConfig(t, dir, 0, base, pki, secretFile, fmt.Sprintf(`
log_level = "error"
audit { file = %q }
`, audit), fmt.Sprintf(`
authority "default" {
  root_file  = %q
  chain_file = %q
  key        = %q
}
provisioner "default" {
  kind = "enrollment-token"
  dns  = ["*"]
}
provisioner "auto" {
  kind     = "jwk"
  jwk_file = %q
  dns      = ["*"]
}
`, pki.root, pki.chain, pki.key, jwkFile))
	original, _ := os.ReadFile(config)
	p := start(t, "server", "-config", config)
	c := httpsClient(t, pki.root)
	testwait.For(t, 60*time.Second, "the node to lead and write the admin token", func() bool {
		h, ok := getHealth(c, addr)
		_, err := os.Stat(filepath.Join(dir, "admin.token"))
		return ok && h.RaftState == "Leader" && err == nil
	})
	adminB, _ := os.ReadFile(filepath.Join(dir, "admin.token"))
	admin := strings.TrimSpace(string(adminB))
	hup := func() {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	alive := func() {
		t.Helper()
		if p.cmd.ProcessState != nil || p.cmd.Process.Signal(syscall.Signal(0)) != nil {
			t.Fatalf("the server stopped:\n%s", p.out)
		}
	}
	if strings.Contains(p.out.String(), "node started") {
		t.Error("log_level = \"error\" in the file, yet info lines are logged")
	}

	// Several SIGHUPs in a row: it keeps serving.
	for range 5 {
		hup()
	}
	issue(t, c, admin, addr, addr, "after-hups.example")
	alive()

	// logrotate's move and HUP: new lines go to a new file.
	rotated := audit + ".1"
	if err := os.Rename(audit, rotated); err != nil {
		t.Fatal(err)
	}
	hup()
	testwait.For(t, 10*time.Second, "a new audit file", func() bool { _, err := os.Stat(audit); return err == nil })
	issue(t, c, admin, addr, addr, "after-rotation.example")
	testwait.For(t, 10*time.Second, "the issuance in the new audit file", func() bool {
		b, _ := os.ReadFile(audit)
		return strings.Contains(string(b), "after-rotation.example")
	})
	if b, _ := os.ReadFile(rotated); strings.Contains(string(b), "after-rotation.example") || !strings.Contains(string(b), "after-hups.example") {
		t.Errorf("the rotated audit file should hold what came before the HUP and nothing after:\n%s", b)
	}

	// A renewed API certificate, swapped into place by rename: new
	// connections get it.
	newCert, newKey := pki.tls(t, filepath.Join(dir, "tls-renewed"))
	for from, to := range map[string]string{newCert: filepath.Join(dir, "tls-1", "tls.pem"), newKey: filepath.Join(dir, "tls-1", "tls.key")} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(to+".new", to); err != nil {
			t.Fatal(err)
		}
	}
	want := serialOf(t, newCert)
	hup()
	testwait.For(t, 10*time.Second, "the renewed API certificate on a new connection", func() bool {
		return servedSerial(t, pki.root, addr) == want
	})

	// A config file that does not parse: logged, and nothing changes.
	if err := os.WriteFile(config, []byte("node_name = \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup()
	testwait.For(t, 10*time.Second, "the broken config to be reported", func() bool {
		return strings.Contains(p.out.String(), "config file not reloaded")
	})
	issue(t, c, admin, addr, addr, "after-broken-config.example")
	if got := servedSerial(t, pki.root, addr); got != want {
		t.Errorf("after a broken config the API serves certificate %s, want %s", got, want)
	}
	alive()

	// The file again, with a lower log level, a setting that needs a
	// restart, and a new key for the jwk provisioner.
	fixed := strings.Replace(string(original), `log_level = "error"`, `log_level = "info"`, 1) + "ocsp { rate = 50 }\n"
	if err := os.WriteFile(config, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	writeJWK(key2)
	hup()
	testwait.For(t, 10*time.Second, "info lines after log_level = \"info\", and the setting that needs a restart", func() bool {
		out := p.out.String()
		return strings.Contains(out, "msg=reloading") && strings.Contains(out, "settings=ocsp")
	})
	sign := func(k *ecdsa.PrivateKey, jti string) int {
		tok, err := authority.SignJWT(k, "", nil, map[string]any{"iss": "auto", "aud": "https://" + addr + "/v1/sign", "jti": jti,
			"sans": []string{"j.example"}, "exp": time.Now().Add(time.Minute).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		dk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"j.example"}}, dk)
		csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		var out map[string]any
		return postJSON(t, c, "https://"+addr+"/v1/sign", "", map[string]string{"csr": string(csr), "token": tok}, &out)
	}
	n := 0
	testwait.For(t, 20*time.Second, "a token of the new provisioner key to be accepted", func() bool {
		n++
		return sign(key2, fmt.Sprintf("new-%d", n)) == 201
	})
	if st := sign(key1, "old"); st != 401 {
		t.Errorf("a token of the replaced key: %d, want 401", st)
	}
	alive()
	p.stop(t)
}

func serialOf(t *testing.T, certFile string) string {
	t.Helper()
	return mustCert(t, certFile).SerialNumber.String()
}

// servedSerial is the serial of the certificate a new TLS connection to
// addr gets.
func servedSerial(t *testing.T, rootFile, addr string) string {
	t.Helper()
	b, _ := os.ReadFile(rootFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Logf("dial %s: %v", addr, err)
		return ""
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/client"
	"github.com/quorumca/quorumca/node"
)

// A device's life through the client: an admin mints an enrollment token,
// the device enrolls with its own key, anyone reads the certificate's
// record, its OCSP status and the issuer's CRL, and the admin revokes it.
func Example() {
	ctx := context.Background()
	ca, roots, adminToken, stop := startCA()
	defer stop()

	admin, err := client.New(client.Config{Addr: ca, RootCAs: roots, AdminToken: adminToken})
	if err != nil {
		log.Fatal(err)
	}
	toks, err := admin.MintTokens(ctx, client.TokenRequest{SANs: []string{"sensor-7.devices.example"}, TTL: "10m"})
	if err != nil {
		log.Fatal(err)
	}

	// The device: its own key and request, traded with the token.
	device, _ := client.New(client.Config{Addr: ca, RootCAs: roots})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "sensor-7.devices.example"}, DNSNames: []string{"sensor-7.devices.example"}}, key)
	signed, err := device.Sign(ctx, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), toks[0].Token)
	if err != nil {
		log.Fatal(err)
	}
	cert, issuer := parse(signed.Certificate), parse(signed.Chain[0])
	fmt.Println("issued:", cert.DNSNames[0])

	rec, _ := device.Cert(ctx, signed.Serial)
	fmt.Println("record:", rec.Status)
	status, _ := device.OCSP(ctx, cert, issuer)
	fmt.Println("OCSP good:", status.Status == ocsp.Good)

	if _, err := admin.RevokeCert(ctx, signed.Serial, "keyCompromise"); err != nil {
		log.Fatal(err)
	}
	rec, _ = device.Cert(ctx, signed.Serial)
	status, _ = device.OCSP(ctx, cert, issuer)
	fmt.Println("after revocation:", rec.Status, status.Status == ocsp.Revoked)
	// The CRL lists it within the CRL interval.
	for range 100 {
		crl, err := device.CRL(ctx, "", "", -1, issuer)
		if err == nil && listed(crl, cert) {
			fmt.Println("CRL lists it")
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Output:
	// issued: sensor-7.devices.example
	// record: valid
	// OCSP good: true
	// after revocation: revoked true
	// CRL lists it
}

// startCA runs a one-node CA in this process, as `quorumca dev` does:
// its API address, roots, bootstrap admin token and how to stop it.
func startCA() (addr string, roots *x509.CertPool, adminToken string, stop func()) {
	dir, err := os.MkdirTemp("", "quorumca-example-")
	if err != nil {
		log.Fatal(err)
	}
	pki, err := node.LoadOrCreateDevPKI(dir)
	if err != nil {
		log.Fatal(err)
	}
	certFile, keyFile, err := pki.NodeTLS(filepath.Join(dir, "n1"), []string{"127.0.0.1"})
	if err != nil {
		log.Fatal(err)
	}
	clusterKey, err := pki.ClusterCAKey()
	if err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0") // a free port for plain HTTP (CRL and OCSP URLs)
	if err != nil {
		log.Fatal(err)
	}
	httpAddr := l.Addr().String()
	l.Close()
	n, err := node.Start(node.Config{NodeName: "n1", DataDir: filepath.Join(dir, "n1"),
		APIListen: "127.0.0.1:0", RaftListen: "127.0.0.1:0", HTTPListen: httpAddr,
		TLSCertFile: certFile, TLSKeyFile: keyFile, JoinSecret: "example-join-secret-0123456789", ClusterCAKey: clusterKey,
		Bootstrap: true, Authorities: []*node.AuthorityConfig{pki.Authority("http://" + httpAddr)},
		BootstrapAdminTokenFile: filepath.Join(dir, "admin.token"), AllowInsecureSoftSigner: true,
		CRLInterval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		log.Fatal(err)
	}
	// The node bootstraps once it leads: the admin token comes then.
	var tok []byte
	for deadline := time.Now().Add(30 * time.Second); len(tok) == 0; time.Sleep(20 * time.Millisecond) {
		if tok, _ = os.ReadFile(filepath.Join(dir, "admin.token")); time.Now().After(deadline) {
			log.Fatal("no admin token after 30s")
		}
	}
	roots = x509.NewCertPool()
	roots.AddCert(pki.Root())
	return "https://" + n.APIAddr(), roots, strings.TrimSpace(string(tok)), func() { n.Close(); os.RemoveAll(dir) }
}

func parse(p string) *x509.Certificate {
	blk, _ := pem.Decode([]byte(p))
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	return c
}

func listed(crl *x509.RevocationList, c *x509.Certificate) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
			return true
		}
	}
	return false
}

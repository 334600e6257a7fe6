package scep

//lint:file-ignore SA1019 SCEP clients encrypt with RSAES-PKCS1-v1_5 (deprecated in Go 1.26): these tests must too

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

func selfSigned(t testing.TB, key crypto.Signer, cn string, ku x509.KeyUsage) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: ku}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A PKCSReq goes from a client to the server and its CertRep back: the
// server reads the CSR and its challenge through the RA's key, the client
// reads the certificate through its own; a failure says why.
func TestRoundTrip(t *testing.T) {
	raKey, devKey := rsaKey(t), rsaKey(t)
	ra := selfSigned(t, raKey, "RA", x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment)
	self := selfSigned(t, devKey, "dev.example", x509.KeyUsageDigitalSignature)
	csr, err := CSRWithChallenge(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev.example"}, DNSNames: []string{"dev.example"}}, devKey, "qcet_secret")
	if err != nil {
		t.Fatal(err)
	}
	sent, err := NewRequest(PKCSReq, csr, ra, self, devKey, "tx-1")
	if err != nil {
		t.Fatal(err)
	}
	req, err := Parse(sent.Message)
	if err != nil {
		t.Fatal(err)
	}
	if req.Type != PKCSReq || req.TransactionID != "tx-1" || !req.Signer.Equal(self) {
		t.Fatalf("parsed %+v", req)
	}
	other := selfSigned(t, raKey, "RA again", x509.KeyUsageKeyEncipherment) // same key, another certificate
	content, err := req.Open([]*x509.Certificate{other, ra}, raKey)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseCertificateRequest(content)
	if err != nil || parsed.CheckSignature() != nil {
		t.Fatalf("CSR: %v", err)
	}
	if pw, err := ChallengePassword(parsed); err != nil || pw != "qcet_secret" {
		t.Fatalf("challenge %q %v", pw, err)
	}
	issued := selfSigned(t, devKey, "issued", x509.KeyUsageDigitalSignature)
	nonce := []byte("0123456789abcdef")
	rep, err := req.Reply(Reply{Certs: [][]byte{issued.Raw, ra.Raw}}, ra, raKey, nonce)
	if err != nil {
		t.Fatal(err)
	}
	out, err := sent.ReadReply(rep, []*x509.Certificate{ra})
	if err != nil || out.FailInfo != "" || len(out.Certs) != 2 || string(out.Certs[0]) != string(issued.Raw) {
		t.Fatalf("reply %+v %v", out, err)
	}
	rep, err = req.Reply(Reply{FailInfo: FailBadRequest, FailText: "token_used: spent"}, ra, raKey, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sent.ReadReply(rep, []*x509.Certificate{ra}); err != nil || out.FailInfo != FailBadRequest || out.FailText != "token_used: spent" {
		t.Fatalf("failure %+v %v", out, err)
	}
	// Another client's reply is not this one's.
	sent2, _ := NewRequest(PKCSReq, csr, ra, self, devKey, "tx-2")
	if _, err := sent2.ReadReply(rep, []*x509.Certificate{ra}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a reply to another transaction: %v", err)
	}
}

// What an attacker can change breaks the message: a signature by another
// key, an envelope to another RA, an EC signer the reply cannot be
// encrypted to, a CSR without a challenge.
func TestRefusals(t *testing.T) {
	raKey, devKey := rsaKey(t), rsaKey(t)
	ra := selfSigned(t, raKey, "RA", x509.KeyUsageKeyEncipherment)
	self := selfSigned(t, devKey, "dev", x509.KeyUsageDigitalSignature)
	sent, err := NewRequest(GetCert, []byte{0x30, 0x00}, ra, self, devKey, "tx")
	if err != nil {
		t.Fatal(err)
	}
	for i := range sent.Message {
		bad := append([]byte(nil), sent.Message...)
		bad[i] ^= 0x01
		if req, err := Parse(bad); err == nil {
			// Flips in unsigned parts (the certificate's unsigned
			// fields are signed by itself) may parse; the content must
			// not have changed then.
			if _, err := req.Open([]*x509.Certificate{ra}, raKey); err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("byte %d: %v", i, err)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("byte %d: %v", i, err)
		}
	}
	req, err := Parse(sent.Message)
	if err != nil {
		t.Fatal(err)
	}
	otherRA := selfSigned(t, rsaKey(t), "other RA", x509.KeyUsageKeyEncipherment)
	if _, err := req.Open([]*x509.Certificate{otherRA}, raKey); !errors.Is(err, ErrMalformed) {
		t.Fatalf("envelope to another RA: %v", err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecSelf := selfSigned(t, ec, "ec", x509.KeyUsageDigitalSignature)
	sentEC, err := NewRequest(GetCert, []byte{0x30, 0x00}, ra, ecSelf, ec, "tx")
	if err != nil {
		t.Fatal(err)
	}
	reqEC, err := Parse(sentEC.Message)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reqEC.Reply(Reply{Certs: [][]byte{ra.Raw}}, ra, raKey, []byte("n")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a success to an EC signer: %v", err)
	}
	plain, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, devKey)
	parsed, _ := x509.ParseCertificateRequest(plain)
	if pw, err := ChallengePassword(parsed); pw != "" || err != nil {
		t.Fatalf("no challenge: %q %v", pw, err)
	}
}

// Degenerate is what openssl reads as certs and CRLs only.
func TestDegenerate(t *testing.T) {
	key := rsaKey(t)
	c := selfSigned(t, key, "c", x509.KeyUsageCertSign|x509.KeyUsageCRLSign)
	c.SubjectKeyId = []byte{1, 2, 3, 4}
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, c, key)
	if err != nil {
		t.Fatal(err)
	}
	der, err := Degenerate([][]byte{c.Raw}, [][]byte{crl})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is needed: apt-get install openssl")
	}
	cmd := exec.Command("openssl", "pkcs7", "-inform", "DER", "-print_certs", "-print")
	cmd.Stdin = bytes.NewReader(der)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("subject=CN = c")) || !bytes.Contains(out, []byte("crl:")) {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
}

func FuzzParse(f *testing.F) {
	raKey, devKey := rsaKey(f), rsaKey(f)
	ra := selfSigned(f, raKey, "RA", x509.KeyUsageKeyEncipherment)
	self := selfSigned(f, devKey, "dev", x509.KeyUsageDigitalSignature)
	sent, err := NewRequest(GetCert, []byte{0x30, 0x00}, ra, self, devKey, "tx")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sent.Message)
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unwrapped error: %v", err)
			}
			return
		}
		if _, err := req.Open([]*x509.Certificate{ra}, raKey); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("unwrapped error: %v", err)
		}
	})
}

// Every envelope that does not open fails alike: a wrong RSA padding, a
// wrong content key, another recipient. The random key a bad padding gets
// has the length of the envelope's cipher.
func TestOpenFailsAlike(t *testing.T) {
	raKey := rsaKey(t)
	ra := selfSigned(t, raKey, "RA", x509.KeyUsageKeyEncipherment)
	for alg, want := range map[int]int{pkcs7.EncryptionAlgorithmDESCBC: 8, pkcs7.EncryptionAlgorithmAES128CBC: 16, pkcs7.EncryptionAlgorithmAES256CBC: 32} {
		encryptMu.Lock()
		pkcs7.ContentEncryptionAlgorithm = alg
		env, err := pkcs7.Encrypt([]byte("content"), []*x509.Certificate{ra})
		encryptMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if got := contentKeyLen(env); got != want {
			t.Fatalf("cipher %d: key length %d, want %d", alg, got, want)
		}
		req := &Request{envelope: env}
		if c, err := req.Open([]*x509.Certificate{ra}, raKey); err != nil || string(c) != "content" {
			t.Fatalf("cipher %d: %q %v", alg, c, err)
		}
		var texts []string
		for i := len(env) - 300; i < len(env); i += 7 { // the encrypted key and the content
			bad := bytes.Clone(env)
			bad[i] ^= 0x80
			if _, err := (&Request{envelope: bad}).Open([]*x509.Certificate{ra}, raKey); err != nil {
				texts = append(texts, err.Error())
			}
		}
		other := selfSigned(t, rsaKey(t), "other", x509.KeyUsageKeyEncipherment)
		_, err = req.Open([]*x509.Certificate{other}, raKey)
		texts = append(texts, err.Error())
		for _, s := range texts {
			if s != errOpen.Error() && !strings.Contains(s, "envelope:") {
				t.Fatalf("cipher %d: a failure that says more: %q", alg, s)
			}
			if s != errOpen.Error() && strings.Contains(s, "decrypt") {
				t.Fatalf("cipher %d: %q", alg, s)
			}
		}
	}
}

// Deep nesting is refused before the CMS parser sees it (its BER to DER
// conversion takes time quadratic in the depth), in either length form;
// what CMS messages nest passes.
func TestNesting(t *testing.T) {
	nest := func(depth int, indefinite bool) []byte {
		b := []byte{0x05, 0x00} // NULL
		for range depth {
			if indefinite {
				b = append(append([]byte{0x30, 0x80}, b...), 0, 0)
			} else {
				b = append([]byte{0x30, 0x82, byte(len(b) >> 8), byte(len(b))}, b...)
			}
		}
		return b
	}
	for _, indefinite := range []bool{false, true} {
		if err := checkNesting(nest(maxNesting, indefinite)); err != nil {
			t.Errorf("depth %d (indefinite %v): %v", maxNesting, indefinite, err)
		}
		if err := checkNesting(nest(maxNesting+1, indefinite)); !errors.Is(err, ErrMalformed) {
			t.Errorf("depth %d (indefinite %v): %v", maxNesting+1, indefinite, err)
		}
		deep := nest(10000, indefinite)
		start := time.Now()
		if _, err := Parse(deep); !errors.Is(err, ErrMalformed) {
			t.Errorf("depth 10000 (indefinite %v): %v", indefinite, err)
		}
		t.Logf("depth 10000 (indefinite %v) refused in %s", indefinite, time.Since(start))
	}
	for _, b := range [][]byte{{0x30}, {0x30, 0x05, 0x00}, {0x04, 0x80, 0x00, 0x00}, {0x1f}, {0x30, 0x84, 1, 0, 0, 0}} {
		if err := checkNesting(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("% x: %v", b, err)
		}
	}
}

// hsmLike answers as crypto11 does: SessionKeyLen is refused, and a wrong
// padding is an error.
type hsmLike struct{ *rsa.PrivateKey }

func (h hsmLike) Decrypt(r io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if o, ok := opts.(*rsa.PKCS1v15DecryptOptions); ok && o.SessionKeyLen != 0 {
		return nil, errors.New("unsupported RSA option value")
	}
	return h.PrivateKey.Decrypt(r, msg, opts)
}

// Whatever the RSA block holds (a right padding around a key of the
// cipher's length, around one of another length, a wrong padding), the
// content key that comes out has the cipher's length: only the first is
// the key sent. In memory and from an HSM alike.
func TestImplicitRejection(t *testing.T) {
	k := rsaKey(t)
	// A block with a right padding around any bytes, as a forger makes it.
	block := func(key []byte) []byte {
		ct, err := rsa.EncryptPKCS1v15(rand.Reader, &k.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	good, short := bytes.Repeat([]byte{7}, 24), []byte{1, 2, 3, 4, 5}
	wrong := make([]byte, 256)
	rand.Read(wrong)
	for name, d := range map[string]crypto.Decrypter{"in memory": k, "hsm": hsmLike{k}} {
		ir := implicitRejection{d, 24}
		//lint:ignore SA1019 the options SCEP's key transport uses
		v15 := &rsa.PKCS1v15DecryptOptions{}
		if got, err := ir.Decrypt(rand.Reader, block(good), v15); err != nil || !bytes.Equal(got, good) {
			t.Errorf("%s: the key sent: %x %v", name, got, err)
		}
		for what, ct := range map[string][]byte{"another length": block(short), "a wrong padding": wrong} {
			got, err := ir.Decrypt(rand.Reader, ct, v15)
			if err != nil || len(got) != 24 || bytes.Equal(got, good) {
				t.Errorf("%s, %s: %x %v, want 24 random bytes", name, what, got, err)
			}
		}
	}
}

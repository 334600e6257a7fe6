package node

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/internal/atomicfile"
	"github.com/quorumca/quorumca/signer"
	"github.com/quorumca/quorumca/signer/soft"
)

// DevPKI is the throwaway PKI of dev mode and tests: a root, an issuing
// intermediate with a software key, and TLS certificates for node APIs. All
// keys sit in files; nothing here is fit for production.
type DevPKI struct {
	RootFile  string // root certificate, the trust anchor clients use
	ChainFile string // intermediate certificate
	KeyURI    string // intermediate's signing key
	RootKey   string // root's key: the dev root signs a CRL for its intermediates

	root    *x509.Certificate
	rootKey crypto.Signer
}

// LoadOrCreateDevPKI reuses the PKI in dir, or creates one.
func LoadOrCreateDevPKI(dir string) (*DevPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &DevPKI{
		RootFile:  filepath.Join(dir, "root.pem"),
		ChainFile: filepath.Join(dir, "intermediate.pem"),
	}
	rootKeyFile := filepath.Join(dir, "root.key")
	interKeyFile := filepath.Join(dir, "intermediate.key")
	p.KeyURI = soft.Scheme + ":" + interKeyFile
	p.RootKey = soft.Scheme + ":" + rootKeyFile

	if _, err := os.Stat(p.RootFile); err == nil {
		return p, p.load(rootKeyFile)
	}
	now := time.Now()
	_, rootKey, err := soft.Generate(rootKeyFile)
	if err != nil {
		return nil, err
	}
	root, err := authority.CreateRoot(rootKey, "quorumca dev root", 10*365*24*time.Hour, now)
	if err != nil {
		return nil, err
	}
	_, interKey, err := soft.Generate(interKeyFile)
	if err != nil {
		return nil, err
	}
	inter, err := authority.CreateIntermediate(root, rootKey, interKey.Public(), "quorumca dev intermediate", 5*365*24*time.Hour, now)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.ChainFile, authority.EncodePEM(inter.Raw), 0o644); err != nil {
		return nil, err
	}
	// The root goes last: its presence marks a complete PKI.
	if err := os.WriteFile(p.RootFile, authority.EncodePEM(root.Raw), 0o644); err != nil {
		return nil, err
	}
	p.root, p.rootKey = root, rootKey
	return p, nil
}

func (p *DevPKI) load(rootKeyFile string) error {
	b, err := os.ReadFile(p.RootFile)
	if err != nil {
		return err
	}
	certs, err := authority.ParseCertsPEM(b)
	if err != nil {
		return fmt.Errorf("%s: %w", p.RootFile, err)
	}
	kb, err := os.ReadFile(rootKeyFile)
	if err != nil {
		return err
	}
	key, err := soft.ParsePrivateKey(kb)
	if err != nil {
		return fmt.Errorf("%s: %w", rootKeyFile, err)
	}
	p.root, p.rootKey = certs[0], key
	return nil
}

// Root is the root certificate.
func (p *DevPKI) Root() *x509.Certificate { return p.root }

// Authority is the config block for the dev authority; baseURL is where
// its CRL and OCSP are served over plain HTTP ("" for nowhere).
func (p *DevPKI) Authority(baseURL string) *AuthorityConfig {
	return &AuthorityConfig{Name: authority.DefaultAuthority, RootFile: p.RootFile, ChainFile: p.ChainFile, Key: p.KeyURI, BaseURL: baseURL, RootKey: p.RootKey}
}

// AdminAuthority is the config block of the dev "admin" authority, whose
// client certificates authenticate admins; its intermediate is made on
// first use.
func (p *DevPKI) AdminAuthority() (*AuthorityConfig, error) {
	dir := filepath.Dir(p.RootFile)
	chain, keyFile := filepath.Join(dir, "admin-intermediate.pem"), filepath.Join(dir, "admin-intermediate.key")
	if _, err := os.Stat(chain); err != nil {
		if p.rootKey == nil {
			return nil, errors.New("dev pki: root key not loaded")
		}
		_, key, err := soft.Generate(keyFile)
		if err != nil {
			return nil, err
		}
		inter, err := authority.CreateIntermediate(p.root, p.rootKey, key.Public(), "quorumca dev admin CA", 5*365*24*time.Hour, time.Now())
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(chain, authority.EncodePEM(inter.Raw), 0o644); err != nil {
			return nil, err
		}
	}
	return &AuthorityConfig{Name: authority.AdminAuthority, RootFile: p.RootFile, ChainFile: chain, Key: soft.Scheme + ":" + keyFile}, nil
}

// ClusterCAKey is the URI of the dev cluster CA key (nodes' mutual TLS),
// made on first use.
func (p *DevPKI) ClusterCAKey() (string, error) {
	path := filepath.Join(filepath.Dir(p.RootFile), "cluster-ca.key")
	if _, err := os.Stat(path); err != nil {
		if _, _, err := soft.Generate(path); err != nil {
			return "", err
		}
	}
	return soft.Scheme + ":" + path, nil
}

// OCSPResponderKey is the URI of the dev authority's delegated OCSP
// responder key, made on first use.
func (p *DevPKI) OCSPResponderKey() (string, error) {
	return p.devKey("ocsp-responder.key", signer.AlgECP256)
}

// SCEPRAKey is the URI of the dev authority's SCEP RA key (RSA), made on
// first use.
func (p *DevPKI) SCEPRAKey() (string, error) {
	return p.devKey("scep-ra.key", signer.AlgRSA2048)
}

func (p *DevPKI) devKey(name, alg string) (string, error) {
	uri := soft.Scheme + ":" + filepath.Join(filepath.Dir(p.RootFile), name)
	if _, err := os.Stat(strings.TrimPrefix(uri, soft.Scheme+":")); err == nil {
		return uri, nil
	}
	return (&signer.Cache{AllowInsecure: true}).Create(context.Background(), uri, alg)
}

// NodeTLS returns the API certificate and key files in dir for hosts,
// creating them, signed by the root, if they do not exist.
func (p *DevPKI) NodeTLS(dir string, hosts []string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls.key")
	if _, err := os.Stat(certFile); err == nil {
		return certFile, keyFile, nil
	}
	if p.rootKey == nil {
		return "", "", errors.New("dev pki: root key not loaded")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	c, err := authority.CreateServerCert(p.root, p.rootKey, k.Public(), hosts, 365*24*time.Hour, time.Now())
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(certFile, authority.EncodePEM(c.Raw), 0o644)
}

// LinkIntermediate makes the dev intermediate name where the root's CRL
// and certificate are served at baseURL (CDP, AIA), signing it again for
// the same key when it names another place (dev started on another
// -listen). The authority takes the new chain at start (updateAuthority).
func (p *DevPKI) LinkIntermediate(baseURL string) error {
	b, err := os.ReadFile(p.ChainFile)
	if err != nil {
		return err
	}
	chain, err := authority.ParseCertsPEM(b)
	if err != nil || len(chain) != 1 {
		return fmt.Errorf("%s: want one certificate (%v)", p.ChainFile, err)
	}
	inter, id := chain[0], authority.IssuerID(p.root)
	crl := authority.RootCRLURL(baseURL, authority.DefaultAuthority, id)
	if baseURL == "" || (len(inter.CRLDistributionPoints) == 1 && inter.CRLDistributionPoints[0] == crl) {
		return nil
	}
	now := time.Now()
	linked, err := authority.CreateLinkedIntermediate(p.root, p.rootKey, inter.PublicKey, inter.Subject.CommonName,
		inter.NotAfter.Sub(now), now, baseURL, authority.DefaultAuthority)
	if err != nil {
		return err
	}
	return atomicfile.Write(p.ChainFile, authority.EncodePEM(linked.Raw), 0o644)
}

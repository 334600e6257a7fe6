package client

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/smallstep/pkcs7"
)

// ESTCertificate reads the answer to an EST enrollment (RFC 7030 section
// 4.2.3): a certs-only PKCS#7 in base64, lines broken or not, holding the
// one certificate issued.
func ESTCertificate(body []byte) (*x509.Certificate, error) {
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(body)), ""))
	if err != nil {
		return nil, err
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, err
	}
	if len(p7.Certificates) != 1 {
		return nil, errors.New("est: the answer holds no single certificate")
	}
	return p7.Certificates[0], nil
}

package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/smallstep/pkcs7"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

// EST (RFC 7030, with RFC 8951's clarifications) enrolls devices, routers
// and MDM clients that speak it rather than the JSON API, at
// /.well-known/est/ and, for one provisioner, /.well-known/est/{label}/.
// Bodies are base64 DER both ways; an enrollment is answered with a
// certs-only PKCS#7. A first enrollment is authenticated by an enrollment
// token as the HTTP Basic password (the user name is the token's ID); a
// reenrollment by the current certificate in the TLS handshake, as
// /v1/renew. At an x5c provisioner's path, a first enrollment is
// authenticated by the device's factory certificate in the handshake. Issuance is the JSON API's: the same single-use tokens, the
// same policy, the same log.

// maxESTBody bounds a request: a base64 CSR with many names fits.
const maxESTBody = 64 << 10

// estRealm names the credentials a 401 asks for.
const estRealm = `Basic realm="quorumca EST", charset="UTF-8"`

func (s *Server) estRoutes(mux *http.ServeMux) {
	for _, base := range []string{"/.well-known/est/", "/.well-known/est/{label}/"} {
		mux.HandleFunc("GET "+base+"cacerts", s.estCACerts)
		mux.HandleFunc("GET "+base+"csrattrs", s.estCSRAttrs)
		mux.HandleFunc("POST "+base+"simpleenroll", s.estEnroll)
		mux.HandleFunc("POST "+base+"simplereenroll", s.estReenroll)
		mux.HandleFunc("POST "+base+"serverkeygen", s.estServerKeygen)
	}
}

// estProvisioner is the provisioner a labelled path names (nil without a
// label): one that enrolls with tokens.
func (s *Server) estProvisioner(ctx context.Context, r *http.Request) (*fsm.Provisioner, error) {
	label := r.PathValue("label")
	if label == "" {
		return nil, nil
	}
	p, err := s.CA.Provisioner(ctx, label)
	if err != nil && !errors.Is(err, fsm.ErrProvisioner) {
		return nil, err
	}
	// Missing, or not enrolling over EST: one answer, so that anonymous
	// callers cannot list provisioners and their kinds.
	if err != nil || (p.Kind != fsm.KindEnrollmentToken && p.Kind != fsm.KindX5C) {
		return nil, refusal(errs.NotFound, "not_found", fmt.Sprintf("no EST provisioner named %.64q", label))
	}
	return p, nil
}

func (s *Server) estCACerts(w http.ResponseWriter, r *http.Request) {
	name := authority.DefaultAuthority
	p, err := s.estProvisioner(r.Context(), r)
	if err != nil {
		s.estFail(w, r, err)
		return
	}
	if p != nil {
		name = p.Authority
	}
	certs, err := s.CA.CACerts(r.Context(), name)
	if err != nil {
		s.estFail(w, r, err)
		return
	}
	p7, err := pkcs7.DegenerateCertificate(bytes.Join(certs, nil))
	if err != nil {
		s.estFail(w, r, err)
		return
	}
	writeBase64(w, http.StatusOK, "application/pkcs7-mime", p7)
}

// OIDs csrattrs names: the key types a provisioner allows.
var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidRSA         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidEd25519     = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidCurves      = map[string]asn1.ObjectIdentifier{
		authority.KeyP256: {1, 2, 840, 10045, 3, 1, 7},
		authority.KeyP384: {1, 3, 132, 0, 34},
		authority.KeyP521: {1, 3, 132, 0, 35},
	}
)

// estCSRAttrs tells a client what its CSR should hold (RFC 7030 section
// 4.5): the key types the provisioner allows, as an id-ecPublicKey
// attribute naming the curves and the OIDs of the others. Without a
// label the provisioner is not known until a token names it: 204.
func (s *Server) estCSRAttrs(w http.ResponseWriter, r *http.Request) {
	p, err := s.estProvisioner(r.Context(), r)
	if err != nil {
		s.estFail(w, r, err)
		return
	}
	if p == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	type attribute struct {
		Type   asn1.ObjectIdentifier
		Values []asn1.ObjectIdentifier `asn1:"set"`
	}
	var curves []asn1.ObjectIdentifier
	var attrs []any
	for _, t := range authority.AllowedKeyTypes(&p.Policy) {
		switch t {
		case authority.KeyRSA:
			attrs = append(attrs, oidRSA)
		case authority.KeyEd25519:
			attrs = append(attrs, oidEd25519)
		default:
			if oid, ok := oidCurves[t]; ok {
				curves = append(curves, oid)
			}
		}
	}
	if len(curves) > 0 {
		attrs = append([]any{attribute{oidECPublicKey, curves}}, attrs...)
	}
	der, err := asn1.Marshal(attrs)
	if err != nil {
		s.estFail(w, r, err)
		return
	}
	writeBase64(w, http.StatusOK, "application/csrattrs", der)
}

// estEnroll issues a first certificate against a token, or, at an x5c
// provisioner's path, against the factory certificate of the TLS handshake
// (RFC 7030 section 4.2.1, 3.3.2).
func (s *Server) estEnroll(w http.ResponseWriter, r *http.Request) {
	if s.estFactoryEnroll(w, r) {
		return
	}
	req, ok := s.estTokenRequest(w, r)
	if !ok {
		return
	}
	iss, err := s.CA.Sign(r.Context(), req)
	s.estIssued(w, r, iss, err)
}

// estFactoryEnroll answers a simpleenroll without Basic credentials at an
// x5c provisioner's path; false for any other.
func (s *Server) estFactoryEnroll(w http.ResponseWriter, r *http.Request) bool {
	if _, _, basic := r.BasicAuth(); basic || r.PathValue("label") == "" {
		return false
	}
	p, err := s.estProvisioner(r.Context(), r)
	if err == nil && p.Kind != fsm.KindX5C {
		return false
	}
	var iss *authority.Issued
	if err == nil {
		var csr []byte
		if csr, err = readESTCSR(w, r); err == nil {
			iss, err = s.CA.SignX5C(r.Context(), authority.X5CRequest{Provisioner: p.Name, CSR: csr, Chain: peerChain(r)})
		}
	}
	s.estIssued(w, r, iss, err)
	return true
}

// estTokenRequest reads a first enrollment: Basic credentials (the
// token's ID and the token), the labelled provisioner, the CSR.
func (s *Server) estTokenRequest(w http.ResponseWriter, r *http.Request) (authority.SignRequest, bool) {
	id, secret, ok := r.BasicAuth()
	if !ok || id == "" || secret == "" {
		s.estFail(w, r, authority.ErrRenewalUnauthenticated.With("EST enrollment needs an enrollment token as the HTTP Basic password, its ID as the user name"))
		return authority.SignRequest{}, false
	}
	prov, csr, err := s.estEnrollment(w, r)
	if err != nil {
		s.estFail(w, r, err)
		return authority.SignRequest{}, false
	}
	return authority.SignRequest{CSR: csr, Token: secret, TokenID: id, Provisioner: prov}, true
}

// estServerKeygen is simpleenroll where the CA makes the key (RFC 7030
// section 4.4), for a provisioner whose policy allows server_keygen: the
// reply is multipart/mixed, the key (unencrypted PKCS#8, protected by
// TLS: the request asks for no key encryption) and the certificate. The
// key exists nowhere else; it is sent no-store.
func (s *Server) estServerKeygen(w http.ResponseWriter, r *http.Request) {
	req, ok := s.estTokenRequest(w, r)
	if !ok {
		return
	}
	iss, key, err := s.CA.SignServerKey(r.Context(), req)
	if err != nil {
		s.estFail(w, r, err)
		return
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	var p7 []byte
	if err == nil {
		p7, err = pkcs7.DegenerateCertificate(iss.Cert.DER)
	}
	if err != nil {
		s.estFail(w, r, err)
		return
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, part := range []struct {
		ct  string
		der []byte
	}{{"application/pkcs8", keyDER}, {"application/pkcs7-mime; smime-type=certs-only", p7}} {
		pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {part.ct}, "Content-Transfer-Encoding": {"base64"}})
		if err != nil {
			s.estFail(w, r, err)
			return
		}
		io.WriteString(pw, base64Lines(part.der))
	}
	mw.Close()
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(body.Bytes())
}

// estEnrollment reads what both enrollments carry: the labelled
// provisioner's name ("" without a label) and the CSR.
func (s *Server) estEnrollment(w http.ResponseWriter, r *http.Request) (string, []byte, error) {
	p, err := s.estProvisioner(r.Context(), r)
	if err != nil {
		return "", nil, err
	}
	csr, err := readESTCSR(w, r)
	if err != nil || p == nil {
		return "", csr, err
	}
	return p.Name, csr, nil
}

// estReenroll renews the certificate of the TLS handshake (RFC 7030
// section 4.2.2): the CSR keeps its names, and may bring a new key.
func (s *Server) estReenroll(w http.ResponseWriter, r *http.Request) {
	prov, csr, err := s.estEnrollment(w, r)
	if err != nil {
		s.estFail(w, r, err)
		return
	}
	iss, err := s.CA.Renew(r.Context(), authority.RenewRequest{PeerCert: peerCert(r), CSR: csr, IssuedOnly: true, Provisioner: prov})
	s.estIssued(w, r, iss, err)
}

func (s *Server) estIssued(w http.ResponseWriter, r *http.Request, iss *authority.Issued, err error) {
	if err != nil {
		s.estFail(w, r, err)
		return
	}
	p7, err := pkcs7.DegenerateCertificate(iss.Cert.DER)
	if err != nil {
		s.estFail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkcs7-mime; smime-type=certs-only")
	writeBase64(w, http.StatusOK, "", p7)
}

// readESTCSR reads an application/pkcs10 body: base64 DER, lines broken
// or not (RFC 8951 section 3.2: Content-Transfer-Encoding is not to be
// relied on), returned as PEM for the authority's parser.
func readESTCSR(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(mt), "application/pkcs10") {
		return nil, refusal(errs.Invalid, "unsupported_media_type", fmt.Sprintf("an EST request is application/pkcs10 (base64 DER), not %.40q", mt))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxESTBody))
	if err != nil {
		return nil, refusal(errs.TooLarge, "too_large", fmt.Sprintf("request body exceeds %d bytes", maxESTBody))
	}
	der, err := base64.StdEncoding.DecodeString(strings.Map(func(c rune) rune {
		if c == '\r' || c == '\n' || c == ' ' || c == '\t' {
			return -1
		}
		return c
	}, string(body)))
	if err != nil || len(der) == 0 {
		return nil, badRequest("the body is not a base64 DER PKCS#10 request")
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// writeBase64 writes der as base64 in 64-character lines, which
// "openssl base64 -d" reads as RFC 7030's examples do.
func writeBase64(w http.ResponseWriter, status int, contentType string, der []byte) {
	if contentType != "" {
		w.Header().Set("Content-Type", contentType)
	}
	w.Header().Set("Content-Transfer-Encoding", "base64")
	w.WriteHeader(status)
	io.WriteString(w, base64Lines(der))
}

// base64Lines is der in base64, in lines of 64 characters.
func base64Lines(der []byte) string {
	enc := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(enc) > 64 {
		b.WriteString(enc[:64])
		b.WriteString("\n")
		enc = enc[64:]
	}
	b.WriteString(enc)
	b.WriteString("\n")
	return b.String()
}

// estFail is fail with EST's two twists: a 401 names the Basic realm, and
// "not now" (no leader, an upgrade) is 202 with Retry-After (RFC 7030
// section 4.2.3), which EST clients retry.
func (s *Server) estFail(w http.ResponseWriter, r *http.Request, err error) {
	s.failAs(w, r, err, func(h http.Header, status int) int {
		switch status {
		case http.StatusUnauthorized:
			h.Set("WWW-Authenticate", estRealm)
		case http.StatusServiceUnavailable:
			return http.StatusAccepted
		}
		return status
	})
}

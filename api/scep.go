package api

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
	"github.com/quorumca/quorumca/scep"
)

// SCEP (RFC 8894) enrolls routers, MDM-managed laptops and phones, and
// other clients that speak it, at /scep/{provisioner}: a provisioner that
// enrolls with tokens, whose authority has a SCEP RA (PUT
// /v1/admin/authorities/{name}/scep-ra). A PKCSReq's challenge password is
// an enrollment token, single use like everywhere else; a RenewalReq is
// signed with the certificate it renews, as /v1/renew's TLS handshake
// proves it. Requests arrive encrypted to the RA's RSA key, which lives in
// the signer; replies are signed by it and encrypted to the requester.
// What SCEP cannot say in a CertRep without a parsed request (a message
// that does not verify) and "not now" (no leader) are HTTP errors, the
// JSON error document of every other endpoint.

// maxSCEPBody bounds a pkiMessage: a CSR with many names, a certificate,
// two layers of CMS.
const maxSCEPBody = 64 << 10

// scepCaps is GetCACaps' answer (RFC 8894 3.5.2): what this server does.
// No GetNextCACert: rollover shows in GetCACert as soon as it happens.
const scepCaps = "AES\nPOSTPKIOperation\nRenewal\nSCEPStandard\nSHA-256\nSHA-512\n"

// codeBadMessage: a message that does not parse, verify or decrypt;
// codeBadAlg: one a reply could not be encrypted for.
const (
	codeBadMessage = "bad_message"
	codeBadAlg     = "bad_alg"
)

func badMessage(err error) error { return refusal(errs.Invalid, codeBadMessage, err.Error()) }

func (s *Server) scepRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /scep/{label}", s.scep)
	mux.HandleFunc("POST /scep/{label}", s.scep)
}

func (s *Server) scep(w http.ResponseWriter, r *http.Request) {
	p, err := s.scepProvisioner(r.Context(), r.PathValue("label"))
	var ra *authority.SCEPRA
	if err == nil {
		ra, err = s.scepRA(r, p)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch op := r.URL.Query().Get("operation"); op {
	case "GetCACaps":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, scepCaps)
	case "GetCACert":
		s.scepCACert(w, r, ra)
	case "PKIOperation":
		s.scepOperation(w, r, p, ra)
	default:
		s.fail(w, r, refusal(errs.Invalid, "bad_request", fmt.Sprintf("operation %.40q: want GetCACaps, GetCACert or PKIOperation", op)))
	}
}

// scepProvisioner is the provisioner a path names: one that enrolls with
// tokens, whose authority has a SCEP RA; one answer for anything else,
// so that anonymous callers cannot list provisioners and their kinds.
func (s *Server) scepProvisioner(ctx context.Context, label string) (*fsm.Provisioner, error) {
	notFound := refusal(errs.NotFound, "not_found", fmt.Sprintf("no SCEP provisioner named %.64q", label))
	p, err := s.CA.Provisioner(ctx, label)
	if errors.Is(err, fsm.ErrProvisioner) || (err == nil && p.Kind != fsm.KindEnrollmentToken) {
		return nil, notFound
	}
	return p, err
}

// scepRA is the provisioner's authority's RA; none is the same not found.
func (s *Server) scepRA(r *http.Request, p *fsm.Provisioner) (*authority.SCEPRA, error) {
	ra, err := s.CA.SCEP(r.Context(), p.Authority)
	if errors.Is(err, authority.ErrNoSCEPRA) {
		return nil, refusal(errs.NotFound, "not_found", fmt.Sprintf("no SCEP provisioner named %.64q", p.Name))
	}
	return ra, err
}

// scepCACert answers GetCACert (RFC 8894 4.2.1.2): the RA's certificate
// first, then the issuer's chain and the roots, certs-only.
func (s *Server) scepCACert(w http.ResponseWriter, r *http.Request, ra *authority.SCEPRA) {
	p7, err := scep.Degenerate(append([][]byte{ra.Cert.Raw}, ra.CACerts...), nil)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-x509-ca-ra-cert")
	w.Write(p7)
}

// scepMessage reads a pkiMessage: a POST's body, or a GET's base64
// message parameter.
func scepMessage(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Method == http.MethodGet {
		msg := r.URL.Query().Get("message")
		if len(msg) > maxSCEPBody*4/3+4 {
			return nil, refusal(errs.TooLarge, "too_large", fmt.Sprintf("message exceeds %d bytes", maxSCEPBody))
		}
		der, err := base64.StdEncoding.DecodeString(msg)
		if err != nil {
			// Some clients send the URL-safe alphabet.
			if der, err = base64.URLEncoding.DecodeString(msg); err != nil {
				return nil, badRequest("the message parameter is not base64")
			}
		}
		return der, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSCEPBody))
	if err != nil {
		return nil, refusal(errs.TooLarge, "too_large", fmt.Sprintf("request body exceeds %d bytes", maxSCEPBody))
	}
	return body, nil
}

func (s *Server) scepOperation(w http.ResponseWriter, r *http.Request, p *fsm.Provisioner, ra *authority.SCEPRA) {
	der, err := scepMessage(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := scep.Parse(der)
	if err != nil {
		s.fail(w, r, badMessage(err))
		return
	}
	out, err := s.scepAnswer(r, p, ra, req)
	if err != nil {
		status, code, msg := s.classify(r, err)
		if status >= 500 || status == http.StatusTooManyRequests {
			s.fail(w, r, err) // not now: the client asks again
			return
		}
		// Refused: a CertRep that says so, signed, to the client.
		s.report(r, status, code, msg)
		out = scep.Reply{FailInfo: scep.FailBadRequest, FailText: code + ": " + msg}
		switch {
		case code == codeBadMessage:
			out.FailInfo = scep.FailBadMessageCheck
		case code == codeBadAlg:
			out.FailInfo = scep.FailBadAlg
		case status == http.StatusNotFound:
			out.FailInfo = scep.FailBadCertID
		}
	}
	nonce := make([]byte, 16)
	rand.Read(nonce)
	rep, err := req.Reply(out, ra.Cert, ra.Sign, nonce)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-pki-message")
	w.Write(rep)
}

// errUnreadable answers every envelope that does not open, and every
// content that does not parse as what the operation reads (a signed CSR,
// an IssuerAndSerial): one answer, so that no one learns whether a forged
// envelope's padding was right (a CBC or Bleichenbacher padding oracle
// would give captured requests away).
var errUnreadable = badMessage(errors.New("the envelope does not open with the RA's key, or does not hold what the operation reads"))

// scepAnswer does what a request asks, returning what its CertRep carries.
func (s *Server) scepAnswer(r *http.Request, p *fsm.Provisioner, ra *authority.SCEPRA, req *scep.Request) (scep.Reply, error) {
	ctx := r.Context()
	switch req.Type {
	case scep.PKCSReq, scep.RenewalReq, scep.CertPoll, scep.GetCert, scep.GetCRL:
	default:
		return scep.Reply{}, badRequest(fmt.Sprintf("messageType %.8q: want PKCSReq, RenewalReq, CertPoll, GetCert or GetCRL", req.Type))
	}
	if _, ok := req.Signer.PublicKey.(*rsa.PublicKey); !ok {
		// A success is encrypted to the signer's key: RSA only. Said
		// before anything is done, so nothing is spent for an answer the
		// client could not read.
		return scep.Reply{}, refusal(errs.Invalid, codeBadAlg, "the message is signed with a key that is not RSA; SCEP replies are encrypted to it")
	}
	content, err := req.Open(ra.Certs, ra.Decrypt)
	if err != nil {
		return scep.Reply{}, errUnreadable
	}
	switch req.Type {
	case scep.PKCSReq, scep.RenewalReq:
		csr, err := x509.ParseCertificateRequest(content)
		if err != nil || csr.CheckSignature() != nil {
			return scep.Reply{}, errUnreadable
		}
		csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: content})
		var iss *authority.Issued
		if req.Type == scep.PKCSReq {
			var token string
			if token, err = scep.ChallengePassword(csr); err != nil {
				return scep.Reply{}, errUnreadable
			}
			if token == "" {
				return scep.Reply{}, refusal(errs.Unauthenticated, "unauthenticated", "a PKCSReq needs an enrollment token as its challenge password")
			}
			iss, err = s.CA.Sign(ctx, authority.SignRequest{CSR: csrPEM, Token: token, Provisioner: p.Name})
		} else {
			// The message's signature, verified by Parse, proves the key of
			// the certificate it renews, as a TLS handshake would.
			iss, err = s.CA.Renew(ctx, authority.RenewRequest{PeerCert: req.Signer, CSR: csrPEM, Provisioner: p.Name, IssuedOnly: true})
		}
		if err != nil {
			return scep.Reply{}, err
		}
		return scep.Reply{Certs: append([][]byte{iss.Cert.DER}, iss.Chain...)}, nil
	case scep.CertPoll:
		return s.scepPoll(ctx, p, req, content)
	}
	var ias scep.IssuerAndSerial
	if err := scep.Unmarshal(content, &ias); err != nil {
		return scep.Reply{}, errUnreadable
	}
	if ias.Serial == nil || ias.Serial.Sign() <= 0 {
		return scep.Reply{}, badRequest("the serial must be positive")
	}
	c, err := s.CA.Cert(ctx, authority.SerialHex(ias.Serial))
	if err != nil {
		return scep.Reply{}, err
	}
	leaf, err := x509.ParseCertificate(c.DER)
	if err != nil || !bytes.Equal(leaf.RawIssuer, ias.Issuer.FullBytes) {
		return scep.Reply{}, refusal(errs.NotFound, "not_found", "no certificate with that issuer and serial")
	}
	if req.Type == scep.GetCert {
		return scep.Reply{Certs: [][]byte{c.DER}}, nil
	}
	crl, err := s.CA.CRLOf(ctx, c)
	if err != nil {
		return scep.Reply{}, err
	}
	return scep.Reply{CRLs: [][]byte{crl.DER}}, nil
}

// scepPoll answers CertPoll (RFC 8894 3.3.3): this server never leaves a
// request pending, so a client polls only when a reply was lost; it gets
// the certificate issued to its key for the subject it names, by this
// provisioner, if there is one.
func (s *Server) scepPoll(ctx context.Context, p *fsm.Provisioner, req *scep.Request, content []byte) (scep.Reply, error) {
	var ias scep.IssuerAndSubject
	if err := scep.Unmarshal(content, &ias); err != nil {
		return scep.Reply{}, errUnreadable
	}
	subject, err := ias.SubjectName()
	if err != nil {
		return scep.Reply{}, errUnreadable
	}
	pub, ok := req.Signer.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if subject.CommonName != "" && ok {
		certs, _, err := s.CA.SearchCerts(ctx, fsm.CertQuery{SAN: strings.ToLower(subject.CommonName), Provisioner: p.Name, Status: "valid", Limit: 100})
		if err != nil {
			return scep.Reply{}, err
		}
		for _, c := range certs {
			if leaf, err := x509.ParseCertificate(c.DER); err == nil && pub.Equal(leaf.PublicKey) {
				return scep.Reply{Certs: [][]byte{c.DER}}, nil
			}
		}
	}
	return scep.Reply{}, refusal(errs.NotFound, "not_found", "no certificate was issued to this key for that subject")
}

package api

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"time"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// Admin endpoints that create, import and rotate authorities. Keys are named
// by URI (awskms:, pkcs11:) and may be created in their backend first.

// keySpec is the key at uri, created first if k asks for it.
func keySpec(k apitypes.KeyOptions, uri string) authority.KeySpec {
	return authority.KeySpec{URI: uri, Create: k.CreateKeys, Algorithm: k.KeyAlgorithm}
}

func authorityJSON(a *fsm.Authority) apitypes.Authority {
	out := apitypes.Authority{Name: a.Name, Root: string(authority.EncodePEM(a.Root)), RootKeyURI: a.RootKeyURI,
		BaseURL: a.BaseURL, CreatedAt: a.CreatedAt, Issuers: []apitypes.Issuer{}, AddedRoots: pemList(a.AddedRoots)}
	if root, err := x509.ParseCertificate(a.Root); err == nil {
		out.RootID = authority.IssuerID(root)
	}
	v, rf := authority.CRLTimes(a)
	out.CRL = apitypes.CRLSettings{Validity: v.String(), Refresh: rf.String(), Shards: a.CRL.Shards}
	for _, iss := range a.Issuers {
		r := apitypes.Issuer{ID: iss.ID, KeyURI: iss.KeyURI, Active: iss.Active, Certificate: string(authority.EncodePEM(iss.Chain[0])), CRLShards: iss.CRLShards}
		if iss.Revoked() {
			r.RevokedAt = &iss.RevokedAt
		}
		if t, err := notAfter(iss.Chain[0]); err == nil {
			r.NotAfter = t
		}
		out.Issuers = append(out.Issuers, r)
	}
	return out
}

func (s *Server) createAuthority(w http.ResponseWriter, r *http.Request) {
	var req apitypes.CreateAuthority
	ctx, ok := s.adminDecode(w, r, authority.PermConfigure, &req)
	if !ok {
		return
	}
	rootTTL, err := parseTTL(req.RootTTL)
	if err == nil {
		var ttl time.Duration
		if ttl, err = parseTTL(req.TTL); err == nil {
			var a *fsm.Authority
			a, err = s.CA.CreateAuthority(ctx, authority.CreateAuthorityRequest{
				Name: req.Name, RootKey: keySpec(req.KeyOptions, req.RootKey), Key: keySpec(req.KeyOptions, req.Key),
				RootCommonName: req.RootCommonName, CommonName: req.CommonName, RootTTL: rootTTL, TTL: ttl, BaseURL: req.BaseURL,
			})
			if err == nil {
				s.authorityCreated(ctx, w, r, a)
				return
			}
		}
	}
	s.fail(w, r, err)
}

// authorityCreated answers with the new authority, after making sure a new
// cluster has a provisioner to issue from it.
func (s *Server) authorityCreated(ctx context.Context, w http.ResponseWriter, r *http.Request, a *fsm.Authority) {
	if err := s.CA.EnsureDefaultProvisioner(ctx, a.Name); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, authorityJSON(a))
}

func (s *Server) authorityCSR(w http.ResponseWriter, r *http.Request) {
	var req apitypes.CSRRequest
	ctx, ok := s.adminDecode(w, r, authority.PermConfigure, &req)
	if !ok {
		return
	}
	csr, uri, err := s.CA.IntermediateCSR(ctx, keySpec(req.KeyOptions, req.Key), req.CommonName)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, apitypes.CSR{CSR: string(csr), Key: uri})
}

func (s *Server) importAuthority(w http.ResponseWriter, r *http.Request) {
	var req apitypes.ImportAuthority
	ctx, ok := s.adminDecode(w, r, authority.PermConfigure, &req)
	if !ok {
		return
	}
	a, err := s.CA.ImportIssuer(ctx, authority.ImportRequest{Name: req.Name, Root: []byte(req.Root),
		Chain: []byte(req.Chain), Key: req.Key, BaseURL: req.BaseURL, KeepOthers: req.KeepOthers, NewRoot: req.NewRoot})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.authorityCreated(ctx, w, r, a)
}

func (s *Server) rotateAuthority(w http.ResponseWriter, r *http.Request) {
	var req apitypes.RotateAuthority
	ctx, ok := s.adminDecode(w, r, authority.PermConfigure, &req)
	if !ok {
		return
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := s.CA.RotateIssuer(ctx, authority.RotateRequest{Name: r.PathValue("name"), Key: keySpec(req.KeyOptions, req.Key),
		CommonName: req.CommonName, TTL: ttl, KeepOthers: req.KeepOthers})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, authorityJSON(a))
}

// updateAuthority sets an authority's root key (its root then signs CRLs
// for its intermediates), base URL or CRL validity and refresh period.
func (s *Server) updateAuthority(w http.ResponseWriter, r *http.Request) {
	var req apitypes.UpdateAuthority
	ctx, ok := s.adminDecode(w, r, authority.PermConfigure, &req)
	if !ok {
		return
	}
	up := authority.UpdateRequest{Name: r.PathValue("name"), RootKey: req.RootKey, BaseURL: req.BaseURL}
	if req.CRL != nil && (req.CRL.Validity != "" || req.CRL.Refresh != "" || req.CRL.Shards == nil) {
		up.CRL = &fsm.CRLSettings{}
		var err1, err2 error
		up.CRL.Validity, err1 = parseTTL(req.CRL.Validity)
		up.CRL.Refresh, err2 = parseTTL(req.CRL.Refresh)
		if err1 != nil || err2 != nil {
			s.fail(w, r, badRequest(`fields "crl.validity" and "crl.refresh": positive durations such as "24h", or absent`))
			return
		}
	}
	if req.CRL != nil {
		up.CRLShards = req.CRL.Shards
	}
	a, err := s.CA.UpdateAuthority(ctx, up)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, authorityJSON(a))
}

// revokeIssuer revokes an intermediate: it issues nothing more and its
// root's CRL lists it within the CRL interval.
func (s *Server) revokeIssuer(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Reason string `json:"reason,omitempty"`
		Force  bool   `json:"force,omitempty"` // the authority's last active issuer too
	}
	ctx, ok := s.adminDecode(w, r, authority.PermConfigure, &req)
	if !ok {
		return
	}
	a, err := s.CA.RevokeIssuer(ctx, r.PathValue("name"), r.PathValue("issuer"), req.Reason, req.Force)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, authorityJSON(a))
}

// rootCRLRequest says what an offline root's next CRL must list, for
// `operator authority crl-sign` to sign where the root's key is.
func (s *Server) rootCRLRequest(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermConfigure)
	if !ok {
		return
	}
	req, err := s.CA.OfflineRootCRLRequest(ctx, r.PathValue("name"), r.URL.Query().Get("root"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, req)
}

// importRootCRL takes a CRL an offline root signed: {"crl": "<PEM>"}.
func (s *Server) importRootCRL(w http.ResponseWriter, r *http.Request) {
	var req struct {
		CRL string `json:"crl"`
	}
	ctx, ok := s.adminDecode(w, r, authority.PermConfigure, &req)
	if !ok {
		return
	}
	blk, _ := pem.Decode([]byte(req.CRL))
	if blk == nil || blk.Type != "X509 CRL" {
		s.fail(w, r, badRequest(`field "crl": a PEM "X509 CRL"`))
		return
	}
	id, err := s.CA.ImportRootCRL(ctx, r.PathValue("name"), blk.Bytes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"root_id": id})
}

func (s *Server) listAuthorities(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := s.admin(w, r, authority.PermRead); !ok {
		return
	}
	as, err := s.CA.Authorities()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []apitypes.Authority{}
	for _, a := range as {
		out = append(out, authorityJSON(a))
	}
	writeJSON(w, http.StatusOK, map[string]any{"authorities": out})
}

func (s *Server) getAuthority(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := s.admin(w, r, authority.PermRead); !ok {
		return
	}
	a, err := s.CA.Authority(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, authorityJSON(a))
}

// adminDecode authenticates an admin with permission p and decodes the body.
func (s *Server) adminDecode(w http.ResponseWriter, r *http.Request, p authority.Permission, v any) (context.Context, bool) {
	_, ctx, ok := s.admin(w, r, p)
	if !ok {
		return nil, false
	}
	if err := decode(w, r, maxAdminBody, v); err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	return ctx, true
}

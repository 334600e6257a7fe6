package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/quorumca/quorumca/api/apitypes"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/errs"
)

func durationString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func provisionerJSON(p *fsm.Provisioner) apitypes.Provisioner {
	pol := p.Policy
	return apitypes.Provisioner{Name: p.Name, Kind: p.Kind, Authority: p.Authority, JWK: p.JWK, Version: p.Version,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, Policy: apitypes.Policy{
			DNS: pol.DNS, IP: pol.IP, URI: pol.URI, Email: pol.Email, CommonName: pol.CommonName,
			DefaultTTL: durationString(pol.DefaultTTL), MaxTTL: durationString(pol.MaxTTL), KeyTypes: pol.KeyTypes,
			RSAMinBits: pol.RSAMinBits, EKU: pol.EKU, RenewGrace: durationString(pol.RenewGrace),
			AllowWildcard: pol.AllowWildcard,
			RevokeOnRenew: pol.RevokeOnRenew,
			ServerKeygen:  pol.ServerKeygen,
		}, ACME: acmeOptionsJSON(p.ACME), X5C: x5cOptionsJSON(p.X5C)}
}

func x5cOptionsJSON(o *fsm.X5COptions) *apitypes.X5COptions {
	if o == nil {
		return nil
	}
	return &apitypes.X5COptions{Roots: o.Roots, DeviceID: o.DeviceID, Names: o.Names, AllowList: o.AllowList, Reprovision: o.Reprovision}
}

func acmeOptionsJSON(o *fsm.ACMEOptions) *apitypes.ACMEOptions {
	if o == nil {
		return nil
	}
	return &apitypes.ACMEOptions{RequireEAB: o.RequireEAB, Challenges: o.Challenges}
}

// provisionerOf converts a document, naming the field of a bad duration.
func provisionerOf(d *apitypes.Provisioner) (fsm.Provisioner, error) {
	p := fsm.Provisioner{Name: d.Name, Kind: d.Kind, Authority: d.Authority, JWK: d.JWK, Policy: fsm.Policy{
		DNS: d.Policy.DNS, IP: d.Policy.IP, URI: d.Policy.URI, Email: d.Policy.Email, CommonName: d.Policy.CommonName,
		KeyTypes: d.Policy.KeyTypes, RSAMinBits: d.Policy.RSAMinBits, EKU: d.Policy.EKU, AllowWildcard: d.Policy.AllowWildcard,
		RevokeOnRenew: d.Policy.RevokeOnRenew, ServerKeygen: d.Policy.ServerKeygen,
	}}
	if d.ACME != nil {
		p.ACME = &fsm.ACMEOptions{RequireEAB: d.ACME.RequireEAB, Challenges: d.ACME.Challenges}
	}
	if o := d.X5C; o != nil {
		p.X5C = &fsm.X5COptions{Roots: o.Roots, DeviceID: o.DeviceID, Names: o.Names, AllowList: o.AllowList, Reprovision: o.Reprovision}
	}
	for _, f := range []struct {
		name string
		in   string
		out  *time.Duration
	}{
		{"policy.default_ttl", d.Policy.DefaultTTL, &p.Policy.DefaultTTL},
		{"policy.max_ttl", d.Policy.MaxTTL, &p.Policy.MaxTTL},
		{"policy.renew_grace", d.Policy.RenewGrace, &p.Policy.RenewGrace},
	} {
		if f.in == "" {
			continue
		}
		v, err := time.ParseDuration(f.in)
		if err != nil {
			return p, badRequest(f.name + ": not a duration such as \"24h\"")
		}
		*f.out = v
	}
	return p, nil
}

func (s *Server) createProvisioner(w http.ResponseWriter, r *http.Request) {
	var doc apitypes.Provisioner
	ctx, ok := s.adminDecode(w, r, authority.PermConfigure, &doc)
	if !ok {
		return
	}
	p, err := provisionerOf(&doc)
	if err == nil {
		err = s.CA.PutProvisioner(ctx, p, 0)
	}
	s.provisionerReply(w, r, p.Name, http.StatusCreated, err)
}

// updateProvisioner replaces a provisioner. The body's "version" must be
// the version the caller read, so two admins cannot overwrite each other.
func (s *Server) updateProvisioner(w http.ResponseWriter, r *http.Request) {
	var doc apitypes.Provisioner
	ctx, ok := s.adminDecode(w, r, authority.PermConfigure, &doc)
	if !ok {
		return
	}
	if doc.Name == "" {
		doc.Name = r.PathValue("name")
	}
	if doc.Name != r.PathValue("name") {
		s.fail(w, r, badRequest("name: a provisioner cannot be renamed"))
		return
	}
	if doc.Version == 0 {
		s.fail(w, r, badRequest("version: the version you read is required"))
		return
	}
	p, err := provisionerOf(&doc)
	if err == nil {
		err = s.CA.PutProvisioner(ctx, p, doc.Version)
	}
	s.provisionerReply(w, r, p.Name, http.StatusOK, err)
}

func (s *Server) provisionerReply(w http.ResponseWriter, r *http.Request, name string, status int, err error) {
	var p *fsm.Provisioner
	if err == nil {
		p, err = s.CA.Provisioner(r.Context(), name)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, status, provisionerJSON(p))
}

func (s *Server) getProvisioner(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermRead)
	if !ok {
		return
	}
	p, err := s.CA.Provisioner(ctx, r.PathValue("name"))
	if err != nil {
		s.fail(w, r, notFoundIf(err, fsm.ErrProvisioner))
		return
	}
	writeJSON(w, http.StatusOK, provisionerJSON(p))
}

// notFoundIf turns a refusal about a missing resource named in the path
// into a 404.
func notFoundIf(err error, sentinel *errs.Error) error {
	if errors.Is(err, sentinel) {
		return refusal(errs.NotFound, sentinel.Code, err.Error())
	}
	return err
}

func (s *Server) listProvisioners(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermRead)
	if !ok {
		return
	}
	ps, err := s.CA.Provisioners(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []apitypes.Provisioner{}
	for _, p := range ps {
		out = append(out, provisionerJSON(p))
	}
	writeJSON(w, http.StatusOK, map[string]any{"provisioners": out})
}

func (s *Server) deleteProvisioner(w http.ResponseWriter, r *http.Request) {
	_, ctx, ok := s.admin(w, r, authority.PermConfigure)
	if !ok {
		return
	}
	force := false
	if v := r.URL.Query().Get("force"); v != "" {
		var err error
		if force, err = strconv.ParseBool(v); err != nil {
			s.fail(w, r, badRequest("force: true or false"))
			return
		}
	}
	if err := s.CA.DeleteProvisioner(ctx, r.PathValue("name"), force); err != nil {
		s.fail(w, r, notFoundIf(err, fsm.ErrProvisioner))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// provisionerDoc is a provisioner as the admin API reads and writes it:
// durations as strings ("24h"), the policy under "policy".
type provisionerDoc struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	Authority string          `json:"authority"`
	Policy    policyDoc       `json:"policy"`
	JWK       json.RawMessage `json:"jwk,omitempty"`
	Version   uint64          `json:"version"`
	CreatedAt time.Time       `json:"created_at,omitzero"`
	UpdatedAt time.Time       `json:"updated_at,omitzero"`
}

type policyDoc struct {
	DNS        []string `json:"dns,omitempty"`
	IP         []string `json:"ip,omitempty"`
	URI        []string `json:"uri,omitempty"`
	Email      []string `json:"email,omitempty"`
	CommonName []string `json:"common_name,omitempty"`
	DefaultTTL string   `json:"default_ttl,omitempty"`
	MaxTTL     string   `json:"max_ttl,omitempty"`
	KeyTypes   []string `json:"key_types,omitempty"`
	RSAMinBits int      `json:"rsa_min_bits,omitempty"`
	EKU        string   `json:"eku,omitempty"`
	RenewGrace string   `json:"renew_grace,omitempty"`
	// AllowWildcard: wildcard names ("*.example") where dns covers them.
	AllowWildcard bool `json:"allow_wildcard,omitempty"`
	// RevokeOnRenew: a renewal revokes the certificate it replaces.
	RevokeOnRenew bool `json:"revoke_on_renew,omitempty"`
}

func durationString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func provisionerJSON(p *fsm.Provisioner) provisionerDoc {
	pol := p.Policy
	return provisionerDoc{Name: p.Name, Kind: p.Kind, Authority: p.Authority, JWK: p.JWK, Version: p.Version,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, Policy: policyDoc{
			DNS: pol.DNS, IP: pol.IP, URI: pol.URI, Email: pol.Email, CommonName: pol.CommonName,
			DefaultTTL: durationString(pol.DefaultTTL), MaxTTL: durationString(pol.MaxTTL), KeyTypes: pol.KeyTypes,
			RSAMinBits: pol.RSAMinBits, EKU: pol.EKU, RenewGrace: durationString(pol.RenewGrace),
			AllowWildcard: pol.AllowWildcard,
			RevokeOnRenew: pol.RevokeOnRenew,
		}}
}

// provisioner converts a document, naming the field of a bad duration.
func (d *provisionerDoc) provisioner() (fsm.Provisioner, error) {
	p := fsm.Provisioner{Name: d.Name, Kind: d.Kind, Authority: d.Authority, JWK: d.JWK, Policy: fsm.Policy{
		DNS: d.Policy.DNS, IP: d.Policy.IP, URI: d.Policy.URI, Email: d.Policy.Email, CommonName: d.Policy.CommonName,
		KeyTypes: d.Policy.KeyTypes, RSAMinBits: d.Policy.RSAMinBits, EKU: d.Policy.EKU, AllowWildcard: d.Policy.AllowWildcard,
		RevokeOnRenew: d.Policy.RevokeOnRenew,
	}}
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
	var doc provisionerDoc
	ctx, ok := s.adminDecode(w, r, authority.PermConfigure, &doc)
	if !ok {
		return
	}
	p, err := doc.provisioner()
	if err == nil {
		err = s.CA.PutProvisioner(ctx, p, 0)
	}
	s.provisionerReply(w, r, p.Name, http.StatusCreated, err)
}

// updateProvisioner replaces a provisioner. The body's "version" must be
// the version the caller read, so two admins cannot overwrite each other.
func (s *Server) updateProvisioner(w http.ResponseWriter, r *http.Request) {
	var doc provisionerDoc
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
	p, err := doc.provisioner()
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
func notFoundIf(err error, sentinel *fsm.Error) error {
	if errors.Is(err, sentinel) {
		return &requestError{status: http.StatusNotFound, code: sentinel.Code, msg: err.Error()}
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
	out := []provisionerDoc{}
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
	if err := s.CA.DeleteProvisioner(ctx, r.PathValue("name"), r.URL.Query().Get("force") == "true"); err != nil {
		s.fail(w, r, notFoundIf(err, fsm.ErrProvisioner))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

func init() {
	register(CmdAuthorityPut, "authority_put", 2, applyAuthorityPut)
	register(CmdNodeUpsert, "node_upsert", 1, applyNodeUpsert)
	register(CmdAdminCreate, "admin_create", 1, applyAdminCreate)
	register(CmdIssuerAdd, "issuer_add", 1, applyIssuerAdd)
}

// authorityV1 is the authority_put payload of version 1: one issuer.
type authorityV1 struct {
	Name    string   `json:"name"`
	Root    []byte   `json:"root"`
	Chain   [][]byte `json:"chain"`
	KeyURI  string   `json:"key_uri"`
	BaseURL string   `json:"base_url,omitempty"`
}

// applyAuthorityPut creates an authority. Proposing the same one again is a
// no-op (a retried proposal); a different one under the same name conflicts.
func applyAuthorityPut(a *applyCtx) error {
	var in Authority
	if a.env.Version == 1 {
		var v1 authorityV1
		a.decode(&v1)
		in = Authority{Name: v1.Name, Root: v1.Root, BaseURL: v1.BaseURL,
			Issuers: []Issuer{{ID: "1", Chain: v1.Chain, KeyURI: v1.KeyURI, Active: true}}}
	} else {
		a.decode(&in)
	}
	var cur Authority
	if err := getJSON(a.tx, bAuthorities, []byte(in.Name), &cur); err == nil {
		if bytes.Equal(cur.Root, in.Root) && cur.RootKeyURI == in.RootKeyURI &&
			slices.EqualFunc(cur.Issuers, in.Issuers, sameIssuer) {
			return nil
		}
		return reject(ErrConflict, "authority "+in.Name+" already exists")
	}
	if len(in.Issuers) == 0 {
		return reject(ErrConflict, "authority "+in.Name+" has no issuer")
	}
	in.CreatedAt = a.now
	for i := range in.Issuers {
		in.Issuers[i].CreatedAt = a.now
	}
	putJSON(a.tx, bAuthorities, []byte(in.Name), &in)
	return nil
}

func sameIssuer(x, y Issuer) bool {
	return x.ID == y.ID && x.KeyURI == y.KeyURI && x.Active == y.Active && slices.EqualFunc(x.Chain, y.Chain, bytes.Equal)
}

// IssuerAdd gives an authority another intermediate. With RetireOthers
// (rotation) the new one takes all new issuance; without, it shares it.
type IssuerAdd struct {
	Authority    string `json:"authority"`
	Issuer       Issuer `json:"issuer"`
	RetireOthers bool   `json:"retire_others"`
}

func applyIssuerAdd(a *applyCtx) error {
	var in IssuerAdd
	a.decode(&in)
	var cur Authority
	if err := getJSON(a.tx, bAuthorities, []byte(in.Authority), &cur); err != nil {
		return reject(ErrAuthorityUnknown, "unknown authority "+in.Authority)
	}
	if old := cur.Issuer(in.Issuer.ID); old != nil {
		if old.KeyURI == in.Issuer.KeyURI && slices.EqualFunc(old.Chain, in.Issuer.Chain, bytes.Equal) {
			return nil // a retried proposal
		}
		return reject(ErrConflict, "authority "+in.Authority+" already has issuer "+in.Issuer.ID)
	}
	if in.RetireOthers {
		for i := range cur.Issuers {
			cur.Issuers[i].Active = false
		}
	}
	in.Issuer.Active = true
	in.Issuer.CreatedAt = a.now
	cur.Issuers = append(cur.Issuers, in.Issuer)
	putJSON(a.tx, bAuthorities, []byte(cur.Name), &cur)
	return nil
}

func applyNodeUpsert(a *applyCtx) error {
	var in Node
	a.decode(&in)
	putJSON(a.tx, bNodes, []byte(in.ID), &in)
	return nil
}

func applyAdminCreate(a *applyCtx) error {
	var in Admin
	a.decode(&in)
	var cur Admin
	if err := getJSON(a.tx, bAdmins, in.Hash, &cur); err == nil {
		if cur.ID == in.ID {
			return nil
		}
		return reject(ErrConflict, "admin credential already exists")
	}
	in.CreatedAt = a.now
	putJSON(a.tx, bAdmins, in.Hash, &in)
	return nil
}

func init() {
	register(CmdProvisionerPut, "provisioner_put", 1, applyProvisionerPut)
}

// ProvisionerPut creates (ExpectedVersion 0) or replaces a provisioner. The
// expected version stops two admins from overwriting each other silently.
type ProvisionerPut struct {
	Provisioner     Provisioner `json:"provisioner"`
	ExpectedVersion uint64      `json:"expected_version"`
}

func applyProvisionerPut(a *applyCtx) error {
	var in ProvisionerPut
	a.decode(&in)
	p := in.Provisioner
	if a.tx.Bucket(bAuthorities).Get([]byte(p.Authority)) == nil {
		return reject(ErrAuthorityUnknown, "unknown authority "+p.Authority)
	}
	var cur Provisioner
	exists := getJSON(a.tx, bProvisioners, []byte(p.Name), &cur) == nil
	if exists && cur.Version == in.ExpectedVersion+1 && sameProvisioner(&cur, &p) {
		return nil // a retried proposal
	}
	if (!exists && in.ExpectedVersion != 0) || (exists && cur.Version != in.ExpectedVersion) {
		return reject(ErrVersionMismatch, fmt.Sprintf("provisioner %s is at version %d, not %d", p.Name, cur.Version, in.ExpectedVersion))
	}
	p.Version = in.ExpectedVersion + 1
	p.CreatedAt, p.UpdatedAt = a.now, a.now
	if exists {
		p.CreatedAt = cur.CreatedAt
	}
	putJSON(a.tx, bProvisioners, []byte(p.Name), &p)
	return nil
}

func sameProvisioner(a, b *Provisioner) bool {
	x, y := *a, *b
	x.Version, x.CreatedAt, x.UpdatedAt = 0, time.Time{}, time.Time{}
	y.Version, y.CreatedAt, y.UpdatedAt = 0, time.Time{}, time.Time{}
	bx, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return bytes.Equal(bx, by)
}

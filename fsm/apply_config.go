package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

func init() {
	register(CmdAuthorityPut, "authority_put", 1, applyAuthorityPut)
	register(CmdNodeUpsert, "node_upsert", 1, applyNodeUpsert)
	register(CmdAdminCreate, "admin_create", 1, applyAdminCreate)
}

// applyAuthorityPut creates an authority. Proposing the same one again is a
// no-op (a retried proposal); a different one under the same name conflicts.
func applyAuthorityPut(a *applyCtx) error {
	var in Authority
	a.decode(&in)
	var cur Authority
	if err := getJSON(a.tx, bAuthorities, []byte(in.Name), &cur); err == nil {
		if bytes.Equal(cur.Root, in.Root) && cur.KeyURI == in.KeyURI &&
			slices.EqualFunc(cur.Chain, in.Chain, bytes.Equal) {
			return nil
		}
		return reject(ErrConflict, "authority "+in.Name+" already exists")
	}
	in.CreatedAt = a.now
	putJSON(a.tx, bAuthorities, []byte(in.Name), &in)
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

package fsm

import (
	"bytes"
	"slices"
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

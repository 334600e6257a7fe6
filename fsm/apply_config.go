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
	register(CmdNodeRemove, "node_remove", 1, applyNodeRemove)
	needsFormat(CmdNodeRemove, 1, 2)
	register(CmdAdminCreate, "admin_create", 3, applyAdminCreate)
	needsFormat(CmdAdminCreate, 3, 2)
	register(CmdAdminRevoke, "admin_revoke", 1, applyAdminRevoke)
	register(CmdIssuerAdd, "issuer_add", 2, applyIssuerAdd)
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
	a.notef("authority=%s issuers=%d", in.Name, len(in.Issuers))
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
	if err := checkCRLLayout(&in, in.Issuers...); err != nil {
		return err
	}
	in.CreatedAt = a.now
	for i := range in.Issuers {
		in.Issuers[i].CreatedAt = a.now
		in.Issuers[i].CRLShards, in.Issuers[i].CRLBaseURL = 0, "" // the authority's settings decide
	}
	pinCRLShards(&in)
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
	// NewRoot (version 2) is the DER of a root the issuer chains to that the
	// authority does not have yet: a root rotation. Version 1 had none.
	NewRoot []byte `json:"new_root,omitempty"`
}

func applyIssuerAdd(a *applyCtx) error {
	var in IssuerAdd
	a.decode(&in)
	a.notef("authority=%s issuer=%s retire_others=%v new_root=%v", in.Authority, in.Issuer.ID, in.RetireOthers, len(in.NewRoot) > 0)
	var cur Authority
	if err := getJSON(a.tx, bAuthorities, []byte(in.Authority), &cur); err != nil {
		return reject(ErrAuthorityUnknown, "unknown authority "+in.Authority)
	}
	if err := checkCRLLayout(&cur, in.Issuer); err != nil {
		return err
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
	if len(in.NewRoot) > 0 && !slices.ContainsFunc(cur.Roots(), func(r []byte) bool { return bytes.Equal(r, in.NewRoot) }) {
		cur.AddedRoots = append(cur.AddedRoots, in.NewRoot)
	}
	in.Issuer.Active = true
	in.Issuer.CreatedAt = a.now
	in.Issuer.CRLShards, in.Issuer.CRLBaseURL = 0, "" // the authority's settings decide
	cur.Issuers = append(cur.Issuers, in.Issuer)
	pinCRLShards(&cur)
	putJSON(a.tx, bAuthorities, []byte(cur.Name), &cur)
	return nil
}

// applyNodeUpsert stores a node's addresses as it announced them. A
// removal stays on record (its time voids older node certificates); the
// announcement's time says the node came back since.
func applyNodeUpsert(a *applyCtx) error {
	var in Node
	a.decode(&in)
	a.notef("node=%s api=%s raft=%s", in.ID, in.APIAddr, in.RaftAddr)
	var cur Node
	if getJSON(a.tx, bNodes, []byte(in.ID), &cur) == nil {
		in.RemovedAt = cur.RemovedAt
	}
	in.AnnouncedAt = a.now
	putJSON(a.tx, bNodes, []byte(in.ID), &in)
	return nil
}

// NodeRemove records that an operator removed a node from the cluster.
type NodeRemove struct {
	ID string `json:"id"`
}

// applyNodeRemove marks a node removed now. The node may be unknown to the
// node table (it never announced itself): the mark is what counts.
func applyNodeRemove(a *applyCtx) error {
	var in NodeRemove
	a.decode(&in)
	if in.ID == "" {
		return reject(ErrConflict, "node removal needs an id")
	}
	a.notef("node=%s", in.ID)
	cur := Node{ID: in.ID}
	getJSON(a.tx, bNodes, []byte(in.ID), &cur)
	cur.RemovedAt = a.now
	putJSON(a.tx, bNodes, []byte(in.ID), &cur)
	return nil
}

// AdminCreate adds an admin; a certificate admin's certificate is recorded
// in the same entry, like any issued certificate. Version 1 carried only
// the Admin. Version 3 adds recovery credentials (Admin.Recovery) and
// Consume.
type AdminCreate struct {
	Admin Admin `json:"admin"`
	Cert  *Cert `json:"cert,omitempty"`
	// Consume is the ID of the recovery credential that asks for this
	// admin: it is used up in the same entry, so it creates one admin.
	Consume string `json:"consume,omitempty"`
}

// payloadVersion: without recovery fields an admin_create is version 2,
// which every release applies alike, so creating admins needs no upgraded
// cluster.
func (c AdminCreate) payloadVersion() uint16 {
	if c.Admin.Recovery || c.Consume != "" {
		return 3
	}
	return 2
}

func applyAdminCreate(a *applyCtx) error {
	var in AdminCreate
	if a.env.Version == 1 {
		a.decode(&in.Admin)
	} else {
		a.decode(&in)
	}
	ad := &in.Admin
	if a.env.Version < 3 { // what older binaries apply: no recovery fields
		ad.Recovery, in.Consume = false, ""
	}
	a.notef("admin=%s role=%s", ad.Name, ad.Role)
	if ad.Recovery || in.Consume != "" { // notes of older entries stay as they were: the audit chain hashes them
		a.notef("admin=%s role=%s recovery=%v consume=%s", ad.Name, ad.Role, ad.Recovery, in.Consume)
	}
	var cur Admin
	if err := getJSON(a.tx, bAdmins, ad.key(), &cur); err == nil {
		if cur.ID == ad.ID {
			return nil
		}
		return reject(ErrConflict, "admin credential already exists")
	}
	if ad.Recovery && (len(ad.Hash) == 0 || ad.Role != "admin" || !a.now.Before(ad.ExpiresAt) || ad.ExpiresAt.Sub(a.now) > MaxRecoveryTTL) {
		return reject(ErrAdminInactive, "a recovery credential is an admin token that expires within "+MaxRecoveryTTL.String())
	}
	var consumed *Admin
	var consumedKey []byte
	if in.Consume != "" {
		consumed, consumedKey = adminByID(a, in.Consume)
		if consumed == nil || !consumed.Recovery || !consumed.Active(a.now) || ad.Recovery {
			return reject(ErrAdminInactive, "the recovery credential is used up or expired")
		}
	}
	if in.Cert != nil {
		if a.tx.Bucket(bCerts).Get([]byte(in.Cert.Serial)) != nil {
			return reject(ErrSerialExists, "serial "+in.Cert.Serial+" already issued")
		}
		in.Cert.IssuedAt = a.now
		putCert(a, in.Cert)
	}
	if consumed != nil {
		consumed.RevokedAt = a.now
		putJSON(a.tx, bAdmins, consumedKey, consumed)
	}
	ad.CreatedAt = a.now
	putJSON(a.tx, bAdmins, ad.key(), ad)
	return nil
}

// AdminRevoke withdraws an admin credential. The last active admin with the
// admin role cannot be revoked: nobody could manage the cluster any more.
// Superseded by admin_withdraw; kept so that logs that hold it replay alike.
type AdminRevoke struct {
	ID string `json:"id"`
}

func applyAdminRevoke(a *applyCtx) error {
	var in AdminRevoke
	a.decode(&in)
	a.notef("admin_id=%s", in.ID)
	var target *Admin
	var key []byte
	admins := 0
	err := a.tx.Bucket(bAdmins).ForEach(func(k, v []byte) error {
		var ad Admin
		if err := json.Unmarshal(v, &ad); err != nil {
			return err
		}
		if ad.ID == in.ID {
			target, key = &ad, bytes.Clone(k)
		}
		if ad.Role == "admin" && ad.Active(a.now) {
			admins++
		}
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("fsm: read admins: %v", err))
	}
	switch {
	case target == nil:
		return reject(ErrNotFoundAdmin, "no admin with id "+in.ID)
	case !target.RevokedAt.IsZero():
		return nil
	case target.Role == "admin" && target.Active(a.now) && admins == 1:
		return reject(ErrConflict, "admin "+target.Name+" is the last active admin; create another first")
	}
	target.RevokedAt = a.now
	putJSON(a.tx, bAdmins, key, target)
	return nil
}

func init() {
	// Version 2 may carry policy.allow_wildcard, which binaries before it
	// would drop; a put without it is still written as version 1. Version 3
	// is a server provisioner: binaries before it would let /v1/renew
	// extend an API certificate and issue its names to anyone. Version 4 is
	// an ACME provisioner, whose commands need log format 6. Version 5
	// allows server_keygen, which binaries before it would drop. Version 6
	// is an x5c provisioner, whose devices need log format 8.
	register(CmdProvisionerPut, "provisioner_put", 6, applyProvisionerPut)
	needsFormat(CmdProvisionerPut, 2, 2)
	needsFormat(CmdProvisionerPut, 3, 5)
	needsFormat(CmdProvisionerPut, 4, 6)
	needsFormat(CmdProvisionerPut, 5, 7)
	needsFormat(CmdProvisionerPut, 6, 8)
}

// ProvisionerPut creates (ExpectedVersion 0) or replaces a provisioner. The
// expected version stops two admins from overwriting each other silently.
type ProvisionerPut struct {
	Provisioner     Provisioner `json:"provisioner"`
	ExpectedVersion uint64      `json:"expected_version"`
}

func (p ProvisionerPut) payloadVersion() uint16 {
	if p.Provisioner.Kind == KindX5C || p.Provisioner.X5C != nil {
		return 6
	}
	if p.Provisioner.Policy.ServerKeygen {
		return 5
	}
	if p.Provisioner.Kind == KindACME || p.Provisioner.ACME != nil {
		return 4
	}
	if p.Provisioner.Kind == KindServer {
		return 3
	}
	if p.Provisioner.Policy.AllowWildcard {
		return 2
	}
	return 1
}

func applyProvisionerPut(a *applyCtx) error {
	var in ProvisionerPut
	a.decode(&in)
	p := in.Provisioner
	a.notef("provisioner=%s kind=%s authority=%s expected_version=%d", p.Name, p.Kind, p.Authority, in.ExpectedVersion)
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
	if other := sharedTemplate(a, &p); other != "" {
		return reject(ErrConflict, fmt.Sprintf("provisioner %s makes names of the same template as x5c provisioner %s: two devices would share a name", p.Name, other))
	}
	if attr, ok := devicesAttribute(a, p.Name); ok {
		// Device entries under the name (revoked ones outlive a forced
		// delete) are keyed by that attribute: another would detach every
		// enrollment and revocation from its device.
		if next := deviceAttribute(&p); next != attr && (next != "" || (exists && cur.Kind == KindX5C)) {
			return reject(ErrConflict, fmt.Sprintf("provisioner %s has devices keyed by %q; an x5c provisioner under the name keeps that device_id", p.Name, attr))
		}
	}
	p.Version = in.ExpectedVersion + 1
	p.CreatedAt, p.UpdatedAt = a.now, a.now
	if exists {
		p.CreatedAt = cur.CreatedAt
	}
	putJSON(a.tx, bProvisioners, []byte(p.Name), &p)
	a.bt.provisioners = true
	return nil
}

// deviceAttribute is what identifies an x5c provisioner's devices ("" for
// other kinds).
func deviceAttribute(p *Provisioner) string {
	if p.Kind != KindX5C || p.X5C == nil {
		return ""
	}
	if p.X5C.DeviceID == "" {
		return "serial"
	}
	return p.X5C.DeviceID
}

func sameProvisioner(a, b *Provisioner) bool {
	x, y := *a, *b
	x.Version, x.CreatedAt, x.UpdatedAt = 0, time.Time{}, time.Time{}
	y.Version, y.CreatedAt, y.UpdatedAt = 0, time.Time{}, time.Time{}
	bx, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return bytes.Equal(bx, by)
}

func init() {
	register(CmdProvisionerDel, "provisioner_delete", 1, applyProvisionerDelete)
}

// ProvisionerDelete removes a provisioner. It is refused while tokens of it
// are outstanding, unless Force, which revokes them.
type ProvisionerDelete struct {
	Name  string `json:"name"`
	Force bool   `json:"force"`
}

func applyProvisionerDelete(a *applyCtx) error {
	var in ProvisionerDelete
	a.decode(&in)
	a.notef("provisioner=%s force=%v", in.Name, in.Force)
	if a.tx.Bucket(bProvisioners).Get([]byte(in.Name)) == nil {
		return reject(ErrProvisioner, "no provisioner named "+in.Name)
	}
	var live []Token
	prefix := []byte(in.Name + "\x00")
	c := a.tx.Bucket(bTokensByProv).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		var t Token
		if getJSON(a.tx, bTokens, k[len(prefix):], &t) == nil && t.outstanding(a.now) {
			live = append(live, t)
		}
	}
	if len(live) > 0 && !in.Force {
		return reject(ErrConflict, fmt.Sprintf("provisioner %s has %d outstanding tokens; revoke them or force", in.Name, len(live)))
	}
	// An x5c provisioner's devices go with it (forced): a provisioner made
	// later under the name starts with no allow-list and no enrollments,
	// and with every revocation.
	if _, ok := devicesAttribute(a, in.Name); ok && !in.Force {
		return reject(ErrConflict, fmt.Sprintf("provisioner %s has devices; force deletes their entries", in.Name))
	}
	devicesDelete(a, in.Name)
	for i := range live {
		live[i].RevokedAt = a.now
		putJSON(a.tx, bTokens, live[i].Hash, &live[i])
	}
	del(a.tx, bProvisioners, []byte(in.Name))
	a.bt.provisioners = true
	return nil
}

package fsm

import (
	"bytes"
	"encoding/json"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quorumca/quorumca/internal/errs"
)

// ACME (RFC 8555) state: accounts, orders, authorizations with their
// challenges, and external account binding keys. Every change is a command,
// so any node answers for any object and a round-robin balancer needs no
// stickiness. Nonces are not here: each node keeps its own (acme/nonce.go).
// Times that change a status (an order or authorization expiring) are
// compared with the reader's clock when the object is shown; Apply compares
// them with the leader's, in the entry.

var (
	bACMEAccounts    = []byte("acme_accounts")     // account id -> ACMEAccount
	bACMEAccountKeys = []byte("acme_account_keys") // provisioner, 0, key thumbprint -> account id
	bACMEOrders      = []byte("acme_orders")       // order id -> ACMEOrder
	bACMEOrdersByAcc = []byte("acme_orders_by_account")
	bACMEAuthzs      = []byte("acme_authzs") // authorization id -> ACMEAuthz
	bACMEEAB         = []byte("acme_eab")    // key id -> ACMEEAB
	// bACMEByExpiry: expiry, then 'o' or 'a' and the id: orders and
	// authorizations to prune once they are of no use.
	bACMEByExpiry = []byte("acme_by_expiry")
	// bACMEReplaced: serial -> the order whose certificate replaced it
	// (RFC 9773 "replaces"): a certificate is replaced once.
	bACMEReplaced = []byte("acme_replaced")
)

// ACME statuses (RFC 8555 section 7.1.6).
const (
	ACMEPending     = "pending"
	ACMEProcessing  = "processing"
	ACMEReady       = "ready"
	ACMEValid       = "valid"
	ACMEInvalid     = "invalid"
	ACMEDeactivated = "deactivated"
	ACMERevoked     = "revoked"
	ACMEExpired     = "expired"
)

// KindACME is the provisioner kind that serves ACME.
const KindACME = "acme"

// ACMEOptions are an ACME provisioner's own settings.
type ACMEOptions struct {
	// RequireEAB: new accounts must carry an external account binding
	// made with a key an admin minted for this provisioner.
	RequireEAB bool `json:"require_eab,omitempty"`
	// Challenges offered; empty: http-01, dns-01 and tls-alpn-01.
	Challenges []string `json:"challenges,omitempty"`
}

// ACMEAccount is one ACME account, under one provisioner.
type ACMEAccount struct {
	ID          string          `json:"id"`
	Provisioner string          `json:"provisioner"`
	Thumbprint  string          `json:"thumbprint"` // RFC 7638, base64url
	JWK         json.RawMessage `json:"jwk"`
	Contact     []string        `json:"contact,omitempty"`
	Status      string          `json:"status"` // valid, deactivated
	EAB         string          `json:"eab,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
}

// ACMEIdentifier is a name an order asks for.
type ACMEIdentifier struct {
	Type  string `json:"type"` // dns, ip
	Value string `json:"value"`
}

// ACMEProblem is an RFC 7807 problem as ACME stores it in a challenge.
type ACMEProblem struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

// ACMEOrder is one order. Its status as stored is pending, invalid or
// valid; ready, and invalid by expiry, are derived (ACMEOrderStatus).
type ACMEOrder struct {
	ID          string           `json:"id"`
	Provisioner string           `json:"provisioner"`
	Account     string           `json:"account"`
	Identifiers []ACMEIdentifier `json:"identifiers"`
	Authzs      []string         `json:"authzs"`
	Status      string           `json:"status"`
	Expires     time.Time        `json:"expires"`
	NotAfter    time.Time        `json:"not_after,omitzero"`
	Cert        string           `json:"cert,omitempty"`     // serial, once valid
	Replaces    string           `json:"replaces,omitempty"` // serial the order renews (RFC 9773)
	CreatedAt   time.Time        `json:"created_at"`
}

// ACMEAuthz is one authorization with its challenges.
type ACMEAuthz struct {
	ID         string          `json:"id"`
	Account    string          `json:"account"`
	Identifier ACMEIdentifier  `json:"identifier"`
	Wildcard   bool            `json:"wildcard,omitempty"`
	Status     string          `json:"status"` // pending, valid, invalid, deactivated
	Expires    time.Time       `json:"expires"`
	Challenges []ACMEChallenge `json:"challenges"`
}

// ACMEChallenge is one way to prove control of an authorization's name.
// A validation in progress holds Attempt until Deadline: past it (the node
// validating died) the challenge may be started again.
type ACMEChallenge struct {
	Type      string       `json:"type"`
	Token     string       `json:"token"`
	Status    string       `json:"status"`
	Validated time.Time    `json:"validated,omitzero"`
	Error     *ACMEProblem `json:"error,omitempty"`
	Attempt   string       `json:"attempt,omitempty"`
	Deadline  time.Time    `json:"deadline,omitzero"`
}

// ACMEEAB is an external account binding key: an HMAC key an admin hands
// to one client, which binds it to one new account, once.
type ACMEEAB struct {
	ID          string    `json:"id"`
	Provisioner string    `json:"provisioner"`
	Key         []byte    `json:"key"` // the HMAC key itself: EAB verifies a MAC
	Reference   string    `json:"reference,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	BoundTo     string    `json:"bound_to,omitempty"` // account id
	BoundAt     time.Time `json:"bound_at,omitzero"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
}

// Refusals of ACME commands.
var (
	ErrACMEAccountExists = refusal(errs.Conflict, "acme_account_exists", "an account with this key exists")
	ErrACMEAccountKey    = refusal(errs.Conflict, "acme_key_in_use", "the key belongs to another account")
	ErrACMEAccount       = refusal(errs.Unauthenticated, "acme_account_invalid", "no such account, or deactivated")
	ErrACMEUnknown       = refusal(errs.NotFound, "acme_unknown", "no such ACME object")
	ErrACMEOrderState    = refusal(errs.Conflict, "acme_order_not_ready", "the order is not ready")
	ErrACMEFinalized     = refusal(errs.Conflict, "acme_order_finalized", "the order has already been finalized")
	ErrACMEChallenge     = refusal(errs.Conflict, "acme_challenge_state", "the challenge cannot change so")
	ErrACMEEAB           = refusal(errs.Unauthenticated, "acme_eab_invalid", "external account binding key unknown, used, revoked or expired")
	ErrACMEReplaced      = refusal(errs.Conflict, "acme_already_replaced", "the certificate has already been replaced")
)

func init() {
	for _, c := range []struct {
		t    CmdType
		name string
		fn   handlerFunc
	}{
		{CmdACMEAccountNew, "acme_account_new", applyACMEAccountNew},
		{CmdACMEAccountUpdate, "acme_account_update", applyACMEAccountUpdate},
		{CmdACMEOrderNew, "acme_order_new", applyACMEOrderNew},
		{CmdACMEChallenge, "acme_challenge", applyACMEChallenge},
		{CmdACMEFinalize, "acme_finalize", applyACMEFinalize},
		{CmdACMEEABPut, "acme_eab_put", applyACMEEABPut},
		{CmdACMEPrune, "acme_prune", applyACMEPrune},
	} {
		register(c.t, c.name, 1, c.fn)
		needsFormat(c.t, 1, 6)
	}
}

// ACMEAccountNew creates an account, consuming its EAB key if it names one.
type ACMEAccountNew struct {
	Account ACMEAccount `json:"account"`
}

func applyACMEAccountNew(a *applyCtx) error {
	var in ACMEAccountNew
	a.decode(&in)
	acc := &in.Account
	a.notef("acme account=%s provisioner=%s eab=%s", acc.ID, acc.Provisioner, acc.EAB)
	keyIdx := indexKey(acc.Provisioner, acc.Thumbprint)
	if id := a.tx.Bucket(bACMEAccountKeys).Get(keyIdx); id != nil {
		if string(id) == acc.ID {
			return nil // a retried proposal
		}
		return reject(ErrACMEAccountExists, string(id))
	}
	if err := checkProvisionerKind(a, acc.Provisioner, KindACME); err != nil {
		return err
	}
	var eab ACMEEAB
	if acc.EAB != "" {
		switch err := getJSON(a.tx, bACMEEAB, []byte(acc.EAB), &eab); {
		case err != nil, eab.Provisioner != acc.Provisioner:
			return reject(ErrACMEEAB, "no external account binding key "+acc.EAB+" for this provisioner")
		case eab.BoundTo != "":
			return reject(ErrACMEEAB, "external account binding key "+acc.EAB+" is already bound to an account")
		case !eab.RevokedAt.IsZero():
			return reject(ErrACMEEAB, "external account binding key "+acc.EAB+" has been revoked")
		case !a.now.Before(eab.ExpiresAt):
			return reject(ErrACMEEAB, "external account binding key "+acc.EAB+" has expired")
		}
		eab.BoundTo, eab.BoundAt = acc.ID, a.now
		putJSON(a.tx, bACMEEAB, []byte(eab.ID), &eab)
	}
	acc.Status, acc.CreatedAt = ACMEValid, a.now
	putJSON(a.tx, bACMEAccounts, []byte(acc.ID), acc)
	put(a.tx, bACMEAccountKeys, keyIdx, []byte(acc.ID))
	return nil
}

// checkProvisionerKind refuses a command for a provisioner that does not
// exist (deleted meanwhile) or is of another kind.
func checkProvisionerKind(a *applyCtx, name, kind string) error {
	var p Provisioner
	if getJSON(a.tx, bProvisioners, []byte(name), &p) != nil || p.Kind != kind {
		return reject(ErrProvisioner, "no "+kind+" provisioner named "+name)
	}
	return nil
}

// ACMEAccountUpdate changes an account's contacts, deactivates it, or
// replaces its key (JWK and Thumbprint set).
type ACMEAccountUpdate struct {
	ID         string          `json:"id"`
	Contact    *[]string       `json:"contact,omitempty"`
	Deactivate bool            `json:"deactivate,omitempty"`
	JWK        json.RawMessage `json:"jwk,omitempty"`
	Thumbprint string          `json:"thumbprint,omitempty"`
	// OldThumbprint: a key change applies only while the account still
	// has the key that signed it.
	OldThumbprint string `json:"old_thumbprint,omitempty"`
}

func applyACMEAccountUpdate(a *applyCtx) error {
	var in ACMEAccountUpdate
	a.decode(&in)
	a.notef("acme account=%s deactivate=%v key_change=%v", in.ID, in.Deactivate, in.Thumbprint != "")
	var acc ACMEAccount
	if getJSON(a.tx, bACMEAccounts, []byte(in.ID), &acc) != nil {
		return reject(ErrACMEAccount, "no account "+in.ID)
	}
	if acc.Status != ACMEValid {
		if in.Deactivate {
			return nil // deactivated already, perhaps by this very entry
		}
		return reject(ErrACMEAccount, "account "+in.ID+" is "+acc.Status)
	}
	if in.Thumbprint != "" {
		if in.Thumbprint == acc.Thumbprint {
			return nil // a retried proposal
		}
		if in.OldThumbprint != acc.Thumbprint {
			return reject(ErrACMEAccountKey, "the account's key changed meanwhile")
		}
		newIdx := indexKey(acc.Provisioner, in.Thumbprint)
		if id := a.tx.Bucket(bACMEAccountKeys).Get(newIdx); id != nil {
			return reject(ErrACMEAccountKey, string(id))
		}
		del(a.tx, bACMEAccountKeys, indexKey(acc.Provisioner, acc.Thumbprint))
		put(a.tx, bACMEAccountKeys, newIdx, []byte(acc.ID))
		acc.JWK, acc.Thumbprint = in.JWK, in.Thumbprint
	}
	if in.Contact != nil {
		acc.Contact = *in.Contact
	}
	if in.Deactivate {
		acc.Status = ACMEDeactivated
	}
	putJSON(a.tx, bACMEAccounts, []byte(acc.ID), &acc)
	return nil
}

// ACMEOrderNew stores an order with its new authorizations.
type ACMEOrderNew struct {
	Order  ACMEOrder   `json:"order"`
	Authzs []ACMEAuthz `json:"authzs"`
}

func applyACMEOrderNew(a *applyCtx) error {
	var in ACMEOrderNew
	a.decode(&in)
	o := &in.Order
	a.notef("acme order=%s account=%s identifiers=%d replaces=%s", o.ID, o.Account, len(o.Identifiers), o.Replaces)
	if a.tx.Bucket(bACMEOrders).Get([]byte(o.ID)) != nil {
		return nil // a retried proposal: ids are random
	}
	if err := activeAccount(a, o.Account, o.Provisioner); err != nil {
		return err
	}
	if err := checkProvisionerKind(a, o.Provisioner, KindACME); err != nil {
		return err
	}
	if o.Replaces != "" && a.tx.Bucket(bACMEReplaced).Get([]byte(o.Replaces)) != nil {
		return reject(ErrACMEReplaced, "certificate "+o.Replaces+" has already been replaced")
	}
	for i := range in.Authzs {
		z := &in.Authzs[i]
		if a.tx.Bucket(bACMEAuthzs).Get([]byte(z.ID)) != nil {
			return reject(ErrConflict, "authorization "+z.ID+" exists")
		}
	}
	o.Status, o.CreatedAt = ACMEPending, a.now
	putJSON(a.tx, bACMEOrders, []byte(o.ID), o)
	put(a.tx, bACMEOrdersByAcc, indexKey(o.Account, o.ID), nil)
	put(a.tx, bACMEByExpiry, timeKey(o.Expires, []byte("o"+o.ID)), nil)
	for i := range in.Authzs {
		z := &in.Authzs[i]
		z.Status = ACMEPending
		putJSON(a.tx, bACMEAuthzs, []byte(z.ID), z)
		put(a.tx, bACMEByExpiry, timeKey(z.Expires, []byte("a"+z.ID)), nil)
	}
	return nil
}

func activeAccount(a *applyCtx, id, provisioner string) error {
	var acc ACMEAccount
	if getJSON(a.tx, bACMEAccounts, []byte(id), &acc) != nil || acc.Provisioner != provisioner {
		return reject(ErrACMEAccount, "no account "+id)
	}
	if acc.Status != ACMEValid {
		return reject(ErrACMEAccount, "account "+id+" is "+acc.Status)
	}
	return nil
}

// ACMEChallengeUpdate moves one challenge, or deactivates its authorization:
//   - Status processing marks a validation that takes a while (Attempt,
//     Deadline): allowed while the authorization is pending and unexpired,
//     and the challenge pending or its last attempt past its deadline;
//   - valid or invalid is a validation's outcome, and the authorization's:
//     of a pending challenge (a quick validation commits its outcome
//     alone), of the attempt that is processing, or of any attempt once
//     the processing one is past its deadline;
//   - deactivated (Type empty) deactivates a pending or valid authorization.
type ACMEChallengeUpdate struct {
	Authz     string       `json:"authz"`
	Account   string       `json:"account"`
	Type      string       `json:"type,omitempty"`
	Status    string       `json:"status"`
	Attempt   string       `json:"attempt,omitempty"`
	Deadline  time.Time    `json:"deadline,omitzero"`
	Validated time.Time    `json:"validated,omitzero"`
	Error     *ACMEProblem `json:"error,omitempty"`
}

func applyACMEChallenge(a *applyCtx) error {
	var in ACMEChallengeUpdate
	a.decode(&in)
	a.notef("acme authz=%s challenge=%s status=%s attempt=%s", in.Authz, in.Type, in.Status, in.Attempt)
	var z ACMEAuthz
	if getJSON(a.tx, bACMEAuthzs, []byte(in.Authz), &z) != nil || z.Account != in.Account {
		return reject(ErrACMEUnknown, "no authorization "+in.Authz)
	}
	if in.Status == ACMEDeactivated {
		switch z.Status {
		case ACMEDeactivated:
			return nil
		case ACMEPending, ACMEValid:
			z.Status = ACMEDeactivated
			putJSON(a.tx, bACMEAuthzs, []byte(z.ID), &z)
			return nil
		}
		return reject(ErrACMEChallenge, "authorization "+z.ID+" is "+z.Status)
	}
	i := slices.IndexFunc(z.Challenges, func(c ACMEChallenge) bool { return c.Type == in.Type })
	if i < 0 {
		return reject(ErrACMEUnknown, "authorization "+z.ID+" has no "+in.Type+" challenge")
	}
	c := &z.Challenges[i]
	if c.Attempt == in.Attempt && c.Status == in.Status {
		return nil // a retried proposal
	}
	if z.Status != ACMEPending || !a.now.Before(z.Expires) {
		return reject(ErrACMEChallenge, "authorization "+z.ID+" is no longer pending")
	}
	switch in.Status {
	case ACMEProcessing:
		if c.Status != ACMEPending && !(c.Status == ACMEProcessing && !a.now.Before(c.Deadline)) {
			return reject(ErrACMEChallenge, "challenge "+in.Type+" is "+c.Status)
		}
		c.Status, c.Attempt, c.Deadline, c.Error = ACMEProcessing, in.Attempt, in.Deadline, nil
	case ACMEValid, ACMEInvalid:
		live := c.Status == ACMEProcessing && a.now.Before(c.Deadline)
		if (c.Status != ACMEPending && c.Status != ACMEProcessing) || (live && c.Attempt != in.Attempt) {
			return reject(ErrACMEChallenge, "challenge "+in.Type+" is "+c.Status+", not being validated by attempt "+in.Attempt)
		}
		c.Attempt = in.Attempt
		c.Status, c.Error = in.Status, in.Error
		if in.Status == ACMEValid {
			c.Validated = in.Validated
		}
		z.Status = in.Status
	default:
		panic("fsm: acme challenge status " + in.Status)
	}
	putJSON(a.tx, bACMEAuthzs, []byte(z.ID), &z)
	return nil
}

// ACMEFinalize stores the certificate of a ready order and marks the order
// valid, in one entry: an order yields at most one certificate, whichever
// nodes finalize it at once.
type ACMEFinalize struct {
	Order   string `json:"order"`
	Account string `json:"account"`
	Cert    Cert   `json:"cert"`
}

func applyACMEFinalize(a *applyCtx) error {
	var in ACMEFinalize
	a.decode(&in)
	c := &in.Cert
	a.notef("acme order=%s serial=%s sans=%v", in.Order, c.Serial, c.SANs)
	var o ACMEOrder
	if getJSON(a.tx, bACMEOrders, []byte(in.Order), &o) != nil || o.Account != in.Account {
		return reject(ErrACMEUnknown, "no order "+in.Order)
	}
	if o.Status == ACMEValid {
		if o.Cert == c.Serial {
			return nil // a retried proposal
		}
		return reject(ErrACMEFinalized, o.Cert)
	}
	if err := activeAccount(a, o.Account, o.Provisioner); err != nil {
		return err
	}
	if st := acmeOrderStatus(a.tx, &o, a.now); st != ACMEReady {
		return reject(ErrACMEOrderState, "order "+o.ID+" is "+st)
	}
	if a.tx.Bucket(bCerts).Get([]byte(c.Serial)) != nil {
		return reject(ErrSerialExists, "serial "+c.Serial+" already issued")
	}
	if auth, err := a.authority(c.Authority); err != nil || auth.Issuer(c.Issuer) == nil {
		return reject(ErrAuthorityUnknown, "unknown authority or issuer "+c.Authority+"/"+c.Issuer)
	}
	if o.Replaces != "" {
		if by := a.tx.Bucket(bACMEReplaced).Get([]byte(o.Replaces)); by != nil {
			return reject(ErrACMEReplaced, "certificate "+o.Replaces+" has already been replaced")
		}
		put(a.tx, bACMEReplaced, []byte(o.Replaces), []byte(o.ID))
		c.RenewedFrom = o.Replaces
	}
	c.IssuedAt = a.now
	putCert(a, c)
	o.Status, o.Cert = ACMEValid, c.Serial
	putJSON(a.tx, bACMEOrders, []byte(o.ID), &o)
	return nil
}

// ACMEEABPut stores a new EAB key, or revokes one (Revoke: its id).
type ACMEEABPut struct {
	Key    *ACMEEAB `json:"key,omitempty"`
	Revoke string   `json:"revoke,omitempty"`
}

func applyACMEEABPut(a *applyCtx) error {
	var in ACMEEABPut
	a.decode(&in)
	if in.Key == nil {
		a.notef("acme eab=%s revoke", in.Revoke)
		var k ACMEEAB
		if getJSON(a.tx, bACMEEAB, []byte(in.Revoke), &k) != nil {
			return reject(ErrACMEUnknown, "no external account binding key "+in.Revoke)
		}
		if k.RevokedAt.IsZero() {
			k.RevokedAt = a.now
			putJSON(a.tx, bACMEEAB, []byte(k.ID), &k)
		}
		return nil
	}
	k := in.Key
	a.notef("acme eab=%s provisioner=%s reference=%s", k.ID, k.Provisioner, k.Reference)
	var cur ACMEEAB
	if getJSON(a.tx, bACMEEAB, []byte(k.ID), &cur) == nil {
		if bytes.Equal(cur.Key, k.Key) {
			return nil
		}
		return reject(ErrConflict, "external account binding key "+k.ID+" exists")
	}
	if err := checkProvisionerKind(a, k.Provisioner, KindACME); err != nil {
		return err
	}
	k.CreatedAt = a.now
	putJSON(a.tx, bACMEEAB, []byte(k.ID), k)
	return nil
}

// ACMEPrune drops orders and authorizations that expired before Before
// (at most Limit of each kind's index entries): they are of no use then;
// the certificates they yielded stay.
type ACMEPrune struct {
	Before time.Time `json:"before"`
	Limit  int       `json:"limit"`
}

func applyACMEPrune(a *applyCtx) error {
	var in ACMEPrune
	a.decode(&in)
	a.notef("acme prune before=%s", in.Before.Format(time.RFC3339))
	limit := in.Limit
	if limit <= 0 {
		limit = 10000
	}
	for _, k := range expired(a, bACMEByExpiry, in.Before, limit) {
		kind, id := k[8], k[9:]
		switch kind {
		case 'o':
			var o ACMEOrder
			if getJSON(a.tx, bACMEOrders, id, &o) == nil {
				del(a.tx, bACMEOrdersByAcc, indexKey(o.Account, o.ID))
			}
			del(a.tx, bACMEOrders, id)
		case 'a':
			del(a.tx, bACMEAuthzs, id)
		}
		del(a.tx, bACMEByExpiry, k)
	}
	return nil
}

// HasACMEExpiredBefore reports whether an order or authorization expired
// before t, so the leader proposes a prune only when there is one.
func (f *FSM) HasACMEExpiredBefore(t time.Time) bool {
	found := false
	_ = f.view(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bACMEByExpiry).Cursor().First()
		found = k != nil && bytes.Compare(k[:8], timeKey(t, nil)) < 0
		return nil
	})
	return found
}

// acmeOrderStatus is an order's status at now, from its authorizations.
func acmeOrderStatus(tx *bolt.Tx, o *ACMEOrder, now time.Time) string {
	zs := make([]ACMEAuthz, len(o.Authzs))
	for i, id := range o.Authzs {
		if getJSON(tx, bACMEAuthzs, []byte(id), &zs[i]) != nil {
			return ACMEInvalid // pruned: the order is long dead
		}
	}
	return ACMEOrderStatus(o, zs, now)
}

// ACMEOrderStatus derives an order's status at now from what is stored and
// its authorizations' statuses.
func ACMEOrderStatus(o *ACMEOrder, zs []ACMEAuthz, now time.Time) string {
	if o.Status != ACMEPending {
		return o.Status
	}
	if !now.Before(o.Expires) {
		return ACMEInvalid
	}
	st := ACMEReady
	for i := range zs {
		switch ACMEAuthzStatus(&zs[i], now) {
		case ACMEValid:
		case ACMEPending:
			st = ACMEPending
		default:
			return ACMEInvalid
		}
	}
	return st
}

// ACMEAuthzStatus is an authorization's status at now: one past its
// expiry is expired, whatever it was.
func ACMEAuthzStatus(z *ACMEAuthz, now time.Time) string {
	if (z.Status == ACMEPending || z.Status == ACMEValid) && !now.Before(z.Expires) {
		return ACMEExpired
	}
	return z.Status
}

// Reads.

func (f *FSM) ACMEAccount(id string) (*ACMEAccount, error) {
	return get[ACMEAccount](f, bACMEAccounts, []byte(id))
}

// ACMEAccountByKey finds a provisioner's account by its key's thumbprint.
func (f *FSM) ACMEAccountByKey(provisioner, thumbprint string) (*ACMEAccount, error) {
	var acc ACMEAccount
	err := f.view(func(tx *bolt.Tx) error {
		id := tx.Bucket(bACMEAccountKeys).Get(indexKey(provisioner, thumbprint))
		if id == nil {
			return ErrNotFound
		}
		return getJSON(tx, bACMEAccounts, id, &acc)
	})
	if err != nil {
		return nil, err
	}
	return &acc, nil
}

// ACMEOrder returns an order with its authorizations.
func (f *FSM) ACMEOrder(id string) (*ACMEOrder, []ACMEAuthz, error) {
	var o ACMEOrder
	var zs []ACMEAuthz
	err := f.view(func(tx *bolt.Tx) error {
		if err := getJSON(tx, bACMEOrders, []byte(id), &o); err != nil {
			return err
		}
		zs = make([]ACMEAuthz, len(o.Authzs))
		for i, zid := range o.Authzs {
			if err := getJSON(tx, bACMEAuthzs, []byte(zid), &zs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return &o, zs, nil
}

func (f *FSM) ACMEAuthz(id string) (*ACMEAuthz, error) {
	return get[ACMEAuthz](f, bACMEAuthzs, []byte(id))
}

func (f *FSM) ACMEEAB(id string) (*ACMEEAB, error) { return get[ACMEEAB](f, bACMEEAB, []byte(id)) }

// ACMEOrders lists an account's order ids, oldest first, up to limit
// after the cursor (an order id; "" from the start).
func (f *FSM) ACMEOrders(account, after string, limit int) ([]string, error) {
	var ids []string
	err := f.view(func(tx *bolt.Tx) error {
		prefix := indexKey(account, "")
		c := tx.Bucket(bACMEOrdersByAcc).Cursor()
		k, _ := c.Seek(indexKey(account, after))
		if after != "" && k != nil && bytes.Equal(k, indexKey(account, after)) {
			k, _ = c.Next()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(ids) < limit; k, _ = c.Next() {
			ids = append(ids, string(k[len(prefix):]))
		}
		return nil
	})
	return ids, err
}

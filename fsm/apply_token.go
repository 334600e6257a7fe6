package fsm

import (
	"bytes"
	"time"
)

func init() {
	register(CmdTokenCreate, "token_create", 1, applyTokenCreate)
	register(CmdTokenPrune, "token_prune", 1, applyTokenPrune)
	register(CmdTokenRevoke, "token_revoke", 1, applyTokenRevoke)
}

// TokenRevoke withdraws an unused enrollment token.
type TokenRevoke struct {
	ID string `json:"id"`
}

func applyTokenRevoke(a *applyCtx) error {
	var in TokenRevoke
	a.decode(&in)
	a.notef("token_id=%s", in.ID)
	hash := a.tx.Bucket(bTokenIDs).Get([]byte(in.ID))
	var t Token
	if hash == nil || getJSON(a.tx, bTokens, hash, &t) != nil {
		return reject(ErrTokenUnknown, "no token with id "+in.ID)
	}
	switch {
	case t.UsedBy != "":
		return reject(ErrTokenUsed, "token "+in.ID+" has already been used")
	case !t.RevokedAt.IsZero():
		return nil
	}
	t.RevokedAt = a.now
	putJSON(a.tx, bTokens, bytes.Clone(hash), &t)
	return nil
}

// TokenCreate stores one or more enrollment tokens (a fleet roll-out mints
// many in one entry).
type TokenCreate struct {
	Tokens []Token `json:"tokens"`
}

// TokenPrune drops tokens, used or not, and one-time IDs that expired before
// Before. A used token is kept until its own expiry so a replay is refused
// as "used".
type TokenPrune struct {
	Before time.Time `json:"before"`
	Limit  int       `json:"limit"`
}

func applyTokenCreate(a *applyCtx) error {
	var in TokenCreate
	a.decode(&in)
	if len(in.Tokens) > 0 {
		a.notef("tokens=%d provisioner=%s first_id=%s", len(in.Tokens), in.Tokens[0].Provisioner, in.Tokens[0].ID)
	}
	// Check everything before writing anything: a rejected entry leaves no trace.
	fresh := in.Tokens[:0]
	for i := range in.Tokens {
		t := &in.Tokens[i]
		var cur Token
		if err := getJSON(a.tx, bTokens, t.Hash, &cur); err == nil {
			if cur.ID == t.ID {
				continue // a retried proposal
			}
			return reject(ErrConflict, "token already exists")
		}
		if h := a.tx.Bucket(bTokenIDs).Get([]byte(t.ID)); h != nil {
			return reject(ErrConflict, "token id "+t.ID+" already exists")
		}
		fresh = append(fresh, *t)
	}
	for i := range fresh {
		t := &fresh[i]
		t.CreatedAt = a.now
		putJSON(a.tx, bTokens, t.Hash, t)
		put(a.tx, bTokenIDs, []byte(t.ID), t.Hash)
		put(a.tx, bTokensByExp, timeKey(t.ExpiresAt, t.Hash), nil)
		put(a.tx, bTokensByProv, append([]byte(t.Provisioner+"\x00"), t.Hash...), nil)
	}
	return nil
}

func applyTokenPrune(a *applyCtx) error {
	var in TokenPrune
	a.decode(&in)
	a.notef("before=%s", in.Before.Format(time.RFC3339))
	limit := in.Limit
	if limit <= 0 {
		limit = 10000
	}
	for _, k := range expired(a, bTokensByExp, in.Before, limit) {
		hash := k[8:]
		var t Token
		if err := getJSON(a.tx, bTokens, hash, &t); err == nil {
			del(a.tx, bTokenIDs, []byte(t.ID))
			del(a.tx, bTokensByProv, append([]byte(t.Provisioner+"\x00"), hash...))
		}
		del(a.tx, bTokens, hash)
		del(a.tx, bTokensByExp, k)
	}
	for _, k := range expired(a, bNoncesByExp, in.Before, limit) {
		del(a.tx, bNonces, k[8:])
		del(a.tx, bNoncesByExp, k)
	}
	return nil
}

// expired lists up to limit keys of a by-expiry index that sort before t.
func expired(a *applyCtx, index []byte, t time.Time, limit int) [][]byte {
	end := timeKey(t, nil)
	var keys [][]byte
	c := a.tx.Bucket(index).Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:8], end) < 0 && len(keys) < limit; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	return keys
}

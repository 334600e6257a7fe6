package fsm

import (
	"bytes"
	"time"
)

func init() {
	register(CmdTokenCreate, "token_create", 1, applyTokenCreate)
	register(CmdTokenPrune, "token_prune", 1, applyTokenPrune)
}

// TokenCreate stores one or more enrollment tokens (a fleet roll-out mints
// many in one entry).
type TokenCreate struct {
	Tokens []Token `json:"tokens"`
}

// TokenPrune drops tokens, used or not, that expired before Before. A used
// token is kept until its own expiry so a replay is refused as "used".
type TokenPrune struct {
	Before time.Time `json:"before"`
	Limit  int       `json:"limit"`
}

func applyTokenCreate(a *applyCtx) error {
	var in TokenCreate
	a.decode(&in)
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
	}
	return nil
}

func applyTokenPrune(a *applyCtx) error {
	var in TokenPrune
	a.decode(&in)
	limit := in.Limit
	if limit <= 0 {
		limit = 10000
	}
	end := timeKey(in.Before, nil)
	var keys [][]byte
	c := a.tx.Bucket(bTokensByExp).Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:8], end) < 0 && len(keys) < limit; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		hash := k[8:]
		var t Token
		if err := getJSON(a.tx, bTokens, hash, &t); err == nil {
			del(a.tx, bTokenIDs, []byte(t.ID))
		}
		del(a.tx, bTokens, hash)
		del(a.tx, bTokensByExp, k)
	}
	return nil
}

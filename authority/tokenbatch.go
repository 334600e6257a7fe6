package authority

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

// A batch of tokens is committed in several log entries, each far below
// what the cluster forwards (8 MiB) and packs into one entry (4 MiB): a
// token with 100 long names takes about 25 KB, and 500 of them in one entry
// failed to forward. The request as a whole is bounded too, before anything
// is proposed, since the node holds it in memory twice (the entries and the
// reply).
//
// A batch is all or nothing for the client: the secrets are returned only
// when every entry is committed, and only hashes are stored, so no token of
// a failed request can be used by anyone. If an entry fails after earlier
// ones were committed, those tokens (and the failed entry's, which may
// still have been committed) are withdrawn, best effort, so they are not
// listed as outstanding; the error says how many. The client retries the
// request as a whole: each entry is idempotent, so retries below it are
// harmless too.

const (
	// MaxTokenBatch is the most tokens one request mints.
	MaxTokenBatch = 10000
	// MaxTokenBatchBytes bounds the tokens of one request as they are
	// written to the log (JSON).
	MaxTokenBatchBytes = 16 << 20

	tokensPerEntry  = 500       // small tokens: about 150 KB per entry
	tokenEntryBytes = 512 << 10 // large tokens: 20 with 100 long names each

	withdrawWorkers = 16
	withdrawTimeout = 30 * time.Second
)

// tokenEntries packs encoded tokens into token_create payloads.
type tokenEntries struct {
	payloads [][]byte // each a fsm.TokenCreate in JSON
	ends     []int    // ends[i]: tokens in payloads[0..i]
	cur      []byte
	inCur    int
	count    int
	total    int
}

const tokenCreateOpen, tokenCreateClose = `{"tokens":[`, `]}`

// add appends one token, or refuses it when the request grows too large.
// wanted is the number of tokens the request asks for, for the message.
func (e *tokenEntries) add(t *fsm.Token, wanted int) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if n := len(tokenCreateOpen) + len(b) + len(tokenCreateClose); n > tokenEntryBytes {
		return fmt.Errorf("%w: one token takes %d bytes, at most %d: use fewer or shorter names or properties", ErrTooLarge, n, tokenEntryBytes)
	}
	if e.total += len(b) + 1; e.total > MaxTokenBatchBytes {
		return fmt.Errorf("%w: the tokens of one request may take at most %d MiB; these reach that at token %d of %d (%d bytes each): ask for fewer tokens per request, or use fewer or shorter names or properties",
			ErrTooLarge, MaxTokenBatchBytes>>20, e.count+1, wanted, len(b))
	}
	if e.cur != nil && (e.inCur == tokensPerEntry || len(e.cur)+1+len(b)+len(tokenCreateClose) > tokenEntryBytes) {
		e.finish()
	}
	if e.cur == nil {
		e.cur = append(make([]byte, 0, min(tokenEntryBytes, 64+len(b)*tokensPerEntry)), tokenCreateOpen...)
	} else {
		e.cur = append(e.cur, ',')
	}
	e.cur = append(e.cur, b...)
	e.inCur++
	e.count++
	return nil
}

// finish closes the entry being filled.
func (e *tokenEntries) finish() {
	if e.cur == nil {
		return
	}
	e.payloads = append(e.payloads, append(e.cur, tokenCreateClose...))
	e.ends = append(e.ends, e.count)
	e.cur, e.inCur = nil, 0
}

// commitTokens proposes the entries in order; on a failure it withdraws
// what was committed and says so.
func (ca *CA) commitTokens(ctx context.Context, out []MintedToken, e *tokenEntries) error {
	e.finish()
	for i, p := range e.payloads {
		err := ca.propose(ctx, fsm.CmdTokenCreate, json.RawMessage(p))
		if err == nil {
			continue
		}
		if i == 0 {
			return err // nothing committed, as for any single write that fails
		}
		committed := e.ends[i-1]
		// The failed entry may have been committed all the same: withdraw
		// its tokens too (those that do not exist are refused, harmlessly).
		withdrawn, werr := ca.withdrawTokens(ctx, out[:e.ends[i]])
		if werr != nil {
			return fmt.Errorf("minting stopped after %d of %d tokens were committed: %w; none of them can be used (their secrets were not returned), but only %d could be withdrawn (%v): the rest are listed until they expire; retry the request as a whole",
				committed, len(out), err, withdrawn, werr)
		}
		return fmt.Errorf("minting stopped after %d of %d tokens were committed: %w; they were withdrawn, and none can be used (their secrets were not returned): retry the request as a whole",
			committed, len(out), err)
	}
	return nil
}

// withdrawTokens revokes tokens whose secrets were never handed out, a few
// at a time, until one revocation fails for a reason other than the token's
// state or withdrawTimeout passes.
func (ca *CA) withdrawTokens(ctx context.Context, toks []MintedToken) (int, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), withdrawTimeout)
	defer cancel()
	var withdrawn atomic.Int64
	var mu sync.Mutex
	var failed error
	ids := make(chan string)
	var wg sync.WaitGroup
	for range withdrawWorkers {
		wg.Go(func() {
			for id := range ids {
				err := ca.propose(ctx, fsm.CmdTokenRevoke, fsm.TokenRevoke{ID: id})
				switch {
				case err == nil:
					withdrawn.Add(1)
				case fsm.IsRefusal(err): // never committed: nothing to withdraw
				default:
					mu.Lock()
					failed = firstErr(failed, err)
					mu.Unlock()
					cancel()
				}
			}
		})
	}
feed:
	for _, m := range toks {
		select {
		case ids <- m.Token.ID:
		case <-ctx.Done():
			break feed
		}
	}
	close(ids)
	wg.Wait()
	if failed == nil && ctx.Err() != nil && int(withdrawn.Load()) < len(toks) {
		failed = ctx.Err()
	}
	return int(withdrawn.Load()), failed
}

// firstErr keeps the first error.
func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

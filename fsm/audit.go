package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"

	"github.com/quorumca/quorumca/internal/errs"
)

// The audit log: one entry per applied command, in log order, in the same
// transaction as the command's effect. Each entry carries the hash of the
// previous one and its own, so deleting, reordering or editing an entry
// breaks the chain at that point. Entries are deterministic (leader time,
// origin from the envelope), so every node holds the same chain.

// AuditEntry is one audited command.
type AuditEntry struct {
	Seq     uint64 `json:"seq"`
	Index   uint64 `json:"index"` // Raft log index
	Time    int64  `json:"time"`  // unix nanoseconds, leader's clock
	Command string `json:"command"`
	Actor   string `json:"actor,omitempty"`
	Remote  string `json:"remote,omitempty"`
	Note    string `json:"note,omitempty"`
	Outcome string `json:"outcome"` // "ok", or the refusal's code
	Prev    string `json:"prev"`    // hash of the previous entry
	Hash    string `json:"hash"`
}

var kAuditHead = []byte("audit_head")

// entryHash hashes an entry without its own hash.
func entryHash(e AuditEntry) string {
	e.Hash = ""
	b, _ := json.Marshal(e)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func seqKey(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

func appendAudit(a *applyCtx, command string, err error) {
	e := AuditEntry{Index: a.index, Time: a.env.Time, Command: command, Note: a.note, Outcome: "ok"}
	if o := a.env.Origin; o != nil {
		e.Actor, e.Remote = o.Actor, o.Remote
	}
	if fe := errs.Of(err); fe != nil {
		e.Outcome = fe.Code
	}
	bt := a.bt
	if bt.head == nil {
		bt.head = &AuditEntry{}
		_ = getJSON(a.tx, bMeta, kAuditHead, bt.head) // none yet: Seq 0
	}
	e.Seq, e.Prev = bt.head.Seq+1, bt.head.Hash
	e.Hash = entryHash(e)
	putJSON(a.tx, bAudit, seqKey(e.Seq), &e)
	indexAudit(a.tx, e.Seq, e.Command, e.Actor)
	bt.head.Seq, bt.head.Hash = e.Seq, e.Hash
}

// flushAudit stores the chain's new head, once per transaction, and that
// the index covers it.
func (bt *batchTx) flushAudit() {
	if bt.head != nil && bt.head.Seq > 0 {
		putJSON(bt.tx, bMeta, kAuditHead, AuditEntry{Seq: bt.head.Seq, Hash: bt.head.Hash})
		putUint(bt.tx, bMeta, kAuditIndexed, bt.head.Seq)
	}
}

// AuditHead is the sequence number and hash of the newest audit entry.
func (f *FSM) AuditHead() (uint64, string) {
	var head AuditEntry
	_ = f.view(func(tx *bolt.Tx) error { return getJSON(tx, bMeta, kAuditHead, &head) })
	return head.Seq, head.Hash
}

// Audit query limits: every query is a page.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// AuditFilter selects audit entries.
type AuditFilter struct {
	After   uint64 // entries with Seq > After
	Command string
	Actor   string
	Limit   int // DefaultAuditLimit if 0, at most MaxAuditLimit
}

// AuditPage is one page of matching entries, oldest first.
type AuditPage struct {
	Entries []AuditEntry
	// More: the limit cut the page short. Next is where the next page
	// starts (its After): the last entry returned if More, otherwise the
	// newest entry of the log when it was read, so a poller or follower
	// never reads an entry twice, matching or not.
	More bool
	Next uint64
	// Checkpoint: where the kept chain starts, when the page starts at or
	// before it (entries up to it were cut by retention).
	Checkpoint *AuditCheckpoint
}

// Audit reads one page of entries matching the filter. A filtered query
// walks the index of its command, actor or both from After on, so it reads
// the entries it returns and one index key more, however long the log.
func (f *FSM) Audit(q AuditFilter) (AuditPage, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultAuditLimit
	}
	limit = min(limit, MaxAuditLimit)
	var p AuditPage
	err := f.view(func(tx *bolt.Tx) error {
		cp, err := auditCheckpoint(tx)
		if err != nil {
			return err
		}
		if cp != nil && q.After <= cp.Seq {
			p.Checkpoint = cp
		}
		log := tx.Bucket(bAudit)
		p.Next = q.After
		if k, _ := log.Cursor().Last(); k != nil {
			p.Next = max(q.After, binary.BigEndian.Uint64(k))
		}
		if q.After == math.MaxUint64 {
			return nil // nothing follows the last sequence number (After+1 would wrap to the start)
		}
		// next yields, in order, the sequence numbers the index has for the
		// query, and whether the key's hashes match it (a command-only or
		// unfiltered query: always).
		var next func() (n uint64, match, ok bool)
		start := seqKey(q.After + 1)
		switch {
		case q.Command == "" && q.Actor == "":
			c := log.Cursor()
			k, _ := c.Seek(start)
			next = func() (uint64, bool, bool) {
				if k == nil {
					return 0, false, false
				}
				n := binary.BigEndian.Uint64(k)
				k, _ = c.Next()
				return n, true, true
			}
		case q.Actor == "":
			prefix := auditIndexPrefix(q.Command, "")
			c := tx.Bucket(bAuditIndex).Cursor()
			k, _ := c.Seek(append(prefix, start...))
			next = func() (uint64, bool, bool) {
				if k == nil || len(k) != len(prefix)+8 || !bytes.HasPrefix(k, prefix) {
					return 0, false, false
				}
				n := binary.BigEndian.Uint64(k[len(prefix):])
				k, _ = c.Next()
				return n, true, true
			}
		default:
			prefix := auditIndexPrefix("", q.Actor)
			tail := auditActorTail(q.Command, q.Actor)
			if q.Command == "" {
				tail = tail[:8] // the actor's hash only
			}
			c := tx.Bucket(bAuditIndex).Cursor()
			k, _ := c.Seek(append(prefix, start...))
			next = func() (uint64, bool, bool) {
				if k == nil || len(k) != len(prefix)+8+12 || !bytes.HasPrefix(k, prefix) {
					return 0, false, false
				}
				n := binary.BigEndian.Uint64(k[len(prefix):])
				match := bytes.HasPrefix(k[len(prefix)+8:], tail)
				k, _ = c.Next()
				return n, match, true
			}
		}
		var last uint64
		for scanned := 0; ; scanned++ {
			n, match, ok := next()
			if !ok {
				return nil
			}
			f.auditReads.Add(1)
			if len(p.Entries) == limit {
				p.More, p.Next = true, last
				return nil
			}
			if scanned == maxAuditScan {
				// Looked at enough keys for one page: the next one goes on
				// from here.
				p.More, p.Next = true, n-1
				return nil
			}
			if !match {
				continue
			}
			f.auditReads.Add(1)
			v := log.Get(seqKey(n))
			if v == nil {
				return fmt.Errorf("fsm: the audit index names entry %d, which is not in the log", n)
			}
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("fsm: audit entry %d: %w", n, err)
			}
			if (q.Actor != "" && e.Actor != q.Actor) || (q.Command != "" && e.Command != q.Command) {
				continue // another actor filed under the same principal, with the same hash
			}
			p.Entries, last = append(p.Entries, e), n
		}
	})
	return p, err
}

// AuditReads is the number of audit records queries have read.
func (f *FSM) AuditReads() uint64 { return f.auditReads.Load() }

// ErrAuditBroken: the chain does not verify.
var ErrAuditBroken = errors.New("audit chain broken")

// VerifyAudit walks the whole chain and reports the first entry that does
// not verify, or an index that does not list exactly the entries. It
// returns the number of entries checked.
//
// A chain cut by retention starts after its checkpoint, whose signature is
// checked with the key it names (VerifyCheckpoint; the caller compares
// that key with the cluster's). It returns the number of entries checked.
func VerifyAudit(tx *bolt.Tx) (uint64, error) {
	var prev string
	var n, checked uint64
	cp, err := auditCheckpoint(tx)
	if err != nil {
		return 0, err
	}
	if cp != nil {
		if _, err := VerifyCheckpoint(*cp); err != nil {
			return 0, err
		}
		prev, n = cp.Hash, cp.Seq
	}
	index := newAuditIndexChecker(tx)
	c := tx.Bucket(bAudit).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		n++
		checked++
		var e AuditEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return checked, fmt.Errorf("%w at entry %d: undecodable: %v", ErrAuditBroken, n, err)
		}
		if binary.BigEndian.Uint64(k) != n {
			return checked, fmt.Errorf("%w at entry %d: stored under %d (an entry is missing or moved)", ErrAuditBroken, n, binary.BigEndian.Uint64(k))
		}
		if err := VerifyEntry(e, n, prev); err != nil {
			return checked, err
		}
		if err := index.entry(e, n); err != nil {
			return checked, err
		}
		prev = e.Hash
	}
	var head AuditEntry
	if getJSON(tx, bMeta, kAuditHead, &head) == nil && (head.Seq != n || head.Hash != prev) {
		return checked, fmt.Errorf("%w: the log ends at entry %d but the head says %d (entries were removed at the end)", ErrAuditBroken, n, head.Seq)
	}
	return checked, index.end(n)
}

// VerifyEntry checks one entry: that it is entry seq, follows the entry
// whose hash is prev, and hashes to its recorded hash. Clients verify a
// chain read through the API with it.
func VerifyEntry(e AuditEntry, seq uint64, prev string) error {
	switch {
	case e.Seq != seq:
		return fmt.Errorf("%w at entry %d: sequence %d (an entry is missing or moved)", ErrAuditBroken, seq, e.Seq)
	case e.Prev != prev:
		return fmt.Errorf("%w at entry %d: it does not follow the entry before it", ErrAuditBroken, seq)
	case entryHash(e) != e.Hash:
		return fmt.Errorf("%w at entry %d: its contents were changed", ErrAuditBroken, seq)
	}
	return nil
}

// VerifyAudit checks this FSM's audit chain.
func (f *FSM) VerifyAudit() (uint64, error) {
	var n uint64
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		n, err = VerifyAudit(tx)
		return err
	})
	return n, err
}

// VerifyAuditFile checks the audit chain of a state database file (a copy
// of a node's data, or a stopped node's), opened read-only, and returns
// its checkpoint (nil if nothing was cut).
func VerifyAuditFile(path string) (uint64, *AuditCheckpoint, error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 1e9})
	if err != nil {
		return 0, nil, err
	}
	defer db.Close()
	var n uint64
	var cp *AuditCheckpoint
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bAudit) == nil {
			return errors.New("not a quorumca state database")
		}
		var err error
		if cp, err = auditCheckpoint(tx); err != nil {
			return err
		}
		n, err = VerifyAudit(tx)
		return err
	})
	return n, cp, err
}

// AuditChain verifies a chain entry by entry, from its start or from a
// checkpoint: the archived segments, then the state's kept entries.
type AuditChain struct {
	Seq  uint64 // the last entry verified (or the checkpoint's)
	Prev string // its hash
}

// Next verifies e as the entry after the last one.
func (c *AuditChain) Next(e AuditEntry) error {
	if err := VerifyEntry(e, c.Seq+1, c.Prev); err != nil {
		return err
	}
	c.Seq, c.Prev = e.Seq, e.Hash
	return nil
}

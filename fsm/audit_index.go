package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The audit index lists every entry's sequence number under its command,
// its actor, and both, so a filtered query or follower reads only the
// entries it returns. It lives in bucket audit_index, written in the same
// transaction as the entry and derived from nothing else, so every node's
// index is the same. Keys: a kind byte ('c' command, 'a' actor, 'b' both),
// each name as a uvarint length and its bytes (a name longer than
// maxIndexedName as 0 and its SHA-256, to stay within bolt's key size),
// then the sequence number (8 bytes big-endian); values are empty. An entry
// without an actor is listed under its command only.
//
// meta/audit_indexed is the newest entry the index covers. Entries that an
// older binary appended (before the index existed, or on a node downgraded
// for a while) are indexed when the database is next opened by this one:
// at start, and when a snapshot is restored, since a snapshot from an
// older node carries no index. That is local work, not a replicated
// command: it derives the same keys from the same entries on every node,
// needs no log format gate, and covers snapshots. Digest leaves the index
// out with the log it indexes; VerifyAudit checks one against the other.

var (
	bAuditIndex   = []byte("audit_index")
	kAuditIndexed = []byte("audit_indexed")
)

const maxIndexedName = 255

func appendIndexName(out []byte, s string) []byte {
	if len(s) > maxIndexedName {
		h := sha256.Sum256([]byte(s))
		return append(append(out, 0), h[:]...)
	}
	return append(binary.AppendUvarint(out, uint64(len(s))), s...)
}

// auditIndexPrefix is where the keys of a command, an actor, or both
// begin. One of the two is not empty.
func auditIndexPrefix(command, actor string) []byte {
	switch {
	case actor == "":
		return appendIndexName([]byte{'c'}, command)
	case command == "":
		return appendIndexName([]byte{'a'}, actor)
	}
	return appendIndexName(appendIndexName([]byte{'b'}, command), actor)
}

// auditIndexKeys are the index keys of one entry.
func auditIndexKeys(seq uint64, command, actor string) [][]byte {
	keys := [][]byte{append(auditIndexPrefix(command, ""), seqKey(seq)...)}
	if actor != "" {
		keys = append(keys, append(auditIndexPrefix("", actor), seqKey(seq)...),
			append(auditIndexPrefix(command, actor), seqKey(seq)...))
	}
	return keys
}

func indexAudit(tx *bolt.Tx, seq uint64, command, actor string) {
	for _, k := range auditIndexKeys(seq, command, actor) {
		put(tx, bAuditIndex, k, nil)
	}
}

func putUint(tx *bolt.Tx, bucket, key []byte, n uint64) { put(tx, bucket, key, seqKey(n)) }

func getUint(tx *bolt.Tx, bucket, key []byte) uint64 {
	if v := tx.Bucket(bucket).Get(key); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// backfillChunk bounds the entries indexed per transaction: a log of
// millions of entries is indexed in many commits, not one huge one.
var backfillChunk = 10000

// backfillAuditIndex indexes the entries after meta/audit_indexed. It
// writes nothing when the index is complete (every open but the first
// after an upgrade). An entry that does not decode is left out of the
// index; VerifyAudit reports it.
func backfillAuditIndex(db *bolt.DB) error {
	for {
		behind := false
		_ = db.View(func(tx *bolt.Tx) error {
			k, _ := tx.Bucket(bAudit).Cursor().Last()
			behind = k != nil && binary.BigEndian.Uint64(k) > getUint(tx, bMeta, kAuditIndexed)
			return nil
		})
		if !behind {
			return nil
		}
		err := db.Update(func(tx *bolt.Tx) error {
			from := getUint(tx, bMeta, kAuditIndexed)
			c := tx.Bucket(bAudit).Cursor()
			last, n := from, 0
			for k, v := c.Seek(seqKey(from + 1)); k != nil && n < backfillChunk; k, v = c.Next() {
				last, n = binary.BigEndian.Uint64(k), n+1
				var e struct{ Command, Actor string }
				if json.Unmarshal(v, &e) == nil {
					indexAudit(tx, last, e.Command, e.Actor)
				}
			}
			putUint(tx, bMeta, kAuditIndexed, last)
			return nil
		})
		if err != nil {
			return fmt.Errorf("fsm: index the audit log: %w", err)
		}
	}
}

// auditIndexChecker checks, during VerifyAudit's walk, that the index
// lists exactly the entries it covers: a key removed would hide an entry
// from filtered reads, a key added would show one twice or under another
// name.
type auditIndexChecker struct {
	tx      *bolt.Tx
	covered uint64 // meta/audit_indexed; 0 when there is no index
	keys    int    // keys the covered entries should have
}

func newAuditIndexChecker(tx *bolt.Tx) *auditIndexChecker {
	ic := &auditIndexChecker{tx: tx}
	if tx.Bucket(bAuditIndex) != nil { // files of older binaries have none
		ic.covered = getUint(tx, bMeta, kAuditIndexed)
	}
	return ic
}

func (ic *auditIndexChecker) entry(e AuditEntry, seq uint64) error {
	if seq > ic.covered {
		return nil
	}
	b := ic.tx.Bucket(bAuditIndex)
	for _, k := range auditIndexKeys(seq, e.Command, e.Actor) {
		ic.keys++
		if b.Get(k) == nil {
			return fmt.Errorf("%w at entry %d: the audit index does not list it (the index was changed)", ErrAuditBroken, seq)
		}
	}
	return nil
}

// end checks that the index holds no other key, once the whole log has
// been walked (n entries).
func (ic *auditIndexChecker) end(n uint64) error {
	b := ic.tx.Bucket(bAuditIndex)
	if b == nil || (ic.covered != 0 && ic.covered != n) {
		return nil // no index, or entries appended by an older binary since
	}
	if got := b.Stats().KeyN; got != ic.keys {
		return fmt.Errorf("%w: the audit index holds %d keys, the log needs %d (the index was changed)", ErrAuditBroken, got, ic.keys)
	}
	return nil
}

package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// The audit index lists every entry's sequence number under its command
// and under its actor's principal, so a filtered query or follower reads
// only the entries it returns. It lives in bucket audit_index, written in
// the same transaction as the entry and derived from nothing else, so every
// node's index is the same. Keys:
//   - 'c', the command, the sequence number;
//   - 'a', the actor's principal (auditPrincipal), the sequence number, then
//     an 8-byte hash of the whole actor and a 4-byte hash of the command.
//
// Names are a uvarint length and their bytes (a name longer than
// maxIndexedName as 0 and its SHA-256, to stay within bolt's key size);
// sequence numbers 8 bytes big-endian; values empty. Within a command or a
// principal, new keys come last: every key an entry adds lands at the end of
// a range that is already being written, never at a random place in the
// tree. (Indexing whole actors did: every enrollment and renewal names an
// actor of its own, a token or a certificate, and two keys per entry at
// random places cost 14% of three nodes' issuance rate.) A query for one
// actor, with or without a command, walks its principal's keys and reads
// only the entries whose hashes match (checking the entry itself); it
// looks at no more than maxAuditScan keys per page. An entry without an
// actor is listed under its command only.
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

// maxAuditScan bounds the index keys one query looks at: a query for one
// certificate's actor walks every certificate actor's keys after its
// cursor, and answers a short page (with more) rather than walk them all.
var maxAuditScan = 20000

// auditPrincipal is what the index files an actor under: the actor up to
// its first space ("provisioner:fleet" for "provisioner:fleet token:9c1d",
// "node:n1" for "node:n1 bootstrap"), and all certificates together
// ("cert:"): each renewal or holder revocation names a certificate of its
// own.
func auditPrincipal(actor string) string {
	if i := strings.IndexByte(actor, ' '); i >= 0 {
		actor = actor[:i]
	}
	if strings.HasPrefix(actor, "cert:") {
		return "cert:"
	}
	return actor
}

// auditIndexPrefix is where the keys of a command ('c'), or of an actor's
// principal ('a'), begin.
func auditIndexPrefix(command, actor string) []byte {
	if actor == "" {
		return appendIndexName([]byte{'c'}, command)
	}
	return appendIndexName([]byte{'a'}, auditPrincipal(actor))
}

// auditActorTail is what follows the sequence number in an actor key.
func auditActorTail(command, actor string) []byte {
	a, c := fnv.New64a(), fnv.New32a()
	a.Write([]byte(actor))
	c.Write([]byte(command))
	return c.Sum(a.Sum(nil))
}

// auditIndexKeys are the index keys of one entry.
func auditIndexKeys(seq uint64, command, actor string) [][]byte {
	keys := [][]byte{append(auditIndexPrefix(command, ""), seqKey(seq)...)}
	if actor != "" {
		k := append(auditIndexPrefix("", actor), seqKey(seq)...)
		keys = append(keys, append(k, auditActorTail(command, actor)...))
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

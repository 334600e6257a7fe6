package fsm

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quorumca/quorumca/internal/archive"
)

// The audit log is bounded too: the leader cuts entries older than a
// retention from the front of the chain (after archiving them), and the
// state keeps a checkpoint at the cut: the last removed entry's sequence
// number, hash and time, signed by the cluster CA key. The kept chain
// starts after the checkpoint (its first entry's prev is the checkpoint's
// hash), so it is verified from there; the archive, verified entry by
// entry, must end at the checkpoint's hash, which proves the whole history.

func init() {
	register(CmdAuditCut, "audit_cut", 1, applyAuditCut)
	needsFormat(CmdAuditCut, 1, 4)
}

// MaxAuditCut is the most entries one audit_cut removes.
const MaxAuditCut = 10000

var kAuditCheckpoint = []byte("audit_checkpoint")

// AuditCheckpoint is where the kept audit chain starts: the last entry
// removed from it.
type AuditCheckpoint struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	Time int64  `json:"time"` // the entry's time, unix ns
	// Key is the signer's public key (PKIX DER): the cluster CA key, whose
	// SHA-256 is the cluster CA fingerprint. Signature is over
	// CheckpointDigest, with SHA-256.
	Key       []byte `json:"key"`
	Signature []byte `json:"signature"`
}

// AuditCut removes the entries up to and including Checkpoint.Seq.
type AuditCut struct {
	Checkpoint AuditCheckpoint `json:"checkpoint"`
}

// CheckpointDigest is the SHA-256 a checkpoint's signature covers.
func CheckpointDigest(cp AuditCheckpoint) []byte {
	var b bytes.Buffer
	b.WriteString("quorumca audit checkpoint\x00")
	b.Write(seqKey(cp.Seq))
	b.WriteString(cp.Hash)
	binary.Write(&b, binary.BigEndian, cp.Time)
	h := sha256.Sum256(b.Bytes())
	return h[:]
}

// VerifyCheckpoint checks a checkpoint's signature with the key it names,
// and returns that key's fingerprint (hex SHA-256 of its PKIX DER: the
// cluster CA fingerprint when the cluster signed it). Whoever verifies
// compares the fingerprint with the cluster's.
func VerifyCheckpoint(cp AuditCheckpoint) (string, error) {
	pub, err := x509.ParsePKIXPublicKey(cp.Key)
	if err != nil {
		return "", fmt.Errorf("%w: the checkpoint's key: %v", ErrAuditBroken, err)
	}
	digest := CheckpointDigest(cp)
	ok := false
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest, cp.Signature)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, cp.Signature) == nil
	case ed25519.PublicKey:
		ok = ed25519.VerifyWithOptions(k, digest, cp.Signature, &ed25519.Options{Hash: crypto.SHA512}) == nil
	}
	if !ok {
		return "", fmt.Errorf("%w: the checkpoint at entry %d is not signed by the key it names", ErrAuditBroken, cp.Seq)
	}
	h := sha256.Sum256(cp.Key)
	return hex.EncodeToString(h[:]), nil
}

func applyAuditCut(a *applyCtx) error {
	var in AuditCut
	a.decode(&in)
	cp := in.Checkpoint
	a.notef("through=%d", cp.Seq)
	log := a.tx.Bucket(bAudit)
	first, _ := log.Cursor().First()
	if first == nil {
		return reject(ErrMalformed, "audit_cut: the audit log is empty")
	}
	from := binary.BigEndian.Uint64(first)
	if cp.Seq < from {
		return nil // cut already (a retried entry)
	}
	if cp.Seq-from >= MaxAuditCut {
		return reject(ErrMalformed, fmt.Sprintf("audit_cut: %d entries, more than %d", cp.Seq-from+1, MaxAuditCut))
	}
	var e AuditEntry
	if err := getJSON(a.tx, bAudit, seqKey(cp.Seq), &e); err != nil || e.Hash != cp.Hash || e.Time != cp.Time {
		return reject(ErrMalformed, fmt.Sprintf("audit_cut: entry %d is not the one the checkpoint names", cp.Seq))
	}
	// The newest entry stays: the chain keeps a head. (Within a batch the
	// head is the batch's; either way it is the entry appended last, so
	// every node decides alike however entries were batched.)
	head := auditHeadSeq(a.tx)
	if a.bt.head != nil {
		head = a.bt.head.Seq
	}
	if cp.Seq >= head {
		return reject(ErrMalformed, "audit_cut: the checkpoint is the newest entry")
	}
	if _, err := VerifyCheckpoint(cp); err != nil {
		return reject(ErrMalformed, "audit_cut: "+err.Error())
	}
	for n := from; n <= cp.Seq; n++ {
		var old AuditEntry
		if getJSON(a.tx, bAudit, seqKey(n), &old) == nil {
			for _, k := range auditIndexKeys(n, old.Command, old.Actor) {
				del(a.tx, bAuditIndex, k)
			}
		}
		del(a.tx, bAudit, seqKey(n))
	}
	putJSON(a.tx, bMeta, kAuditCheckpoint, &cp)
	return nil
}

// auditHeadSeq is the newest entry's sequence number in the stored head.
func auditHeadSeq(tx *bolt.Tx) uint64 {
	var head AuditEntry
	_ = getJSON(tx, bMeta, kAuditHead, &head)
	return head.Seq
}

// auditCheckpoint is the stored checkpoint, if any.
func auditCheckpoint(tx *bolt.Tx) (*AuditCheckpoint, error) {
	var cp AuditCheckpoint
	if err := getJSON(tx, bMeta, kAuditCheckpoint, &cp); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	return &cp, nil
}

// AuditCheckpoint is where the kept audit chain starts; nil when nothing
// was cut.
func (f *FSM) AuditCheckpoint() (*AuditCheckpoint, error) {
	var cp *AuditCheckpoint
	err := f.view(func(tx *bolt.Tx) (err error) { cp, err = auditCheckpoint(tx); return err })
	return cp, err
}

// AuditBefore returns up to limit of the oldest entries older than t, as
// they are stored: the next segment for audit retention to archive and
// cut. The newest entry is never among them (the chain's head stays).
func (f *FSM) AuditBefore(t time.Time, limit int) ([]AuditEntry, error) {
	var out []AuditEntry
	err := f.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bAudit).Cursor()
		last, _ := c.Last()
		for k, v := c.First(); k != nil && !bytes.Equal(k, last) && len(out) < limit; k, v = c.Next() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("fsm: audit entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if e.Time >= t.UnixNano() {
				break
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// VerifyAuditArchive verifies the archived segments in order from entry 1
// to the checkpoint, which the last archived entry must be. It returns the
// last entry verified.
func VerifyAuditArchive(cx context.Context, store archive.Store, cp *AuditCheckpoint) (uint64, error) {
	if cp == nil {
		return 0, errors.New("the state holds the whole chain (no checkpoint): nothing to verify in an archive")
	}
	names, err := store.List(cx, "audit/")
	if err != nil {
		return 0, err
	}
	var chain AuditChain
	for _, name := range names {
		data, err := store.Get(cx, name)
		if err != nil {
			return chain.Seq, err
		}
		lines, err := archive.Gunzip(data)
		if err != nil {
			return chain.Seq, fmt.Errorf("%s: %w", name, err)
		}
		// A segment written again after a failed cut may overlap what was
		// verified: its entries must chain among themselves and meet the
		// verified chain at its last entry.
		var local string
		for _, l := range lines {
			var e AuditEntry
			if err := json.Unmarshal(l, &e); err != nil {
				return chain.Seq, fmt.Errorf("%s: %w", name, err)
			}
			if e.Seq <= chain.Seq {
				prev := cmp.Or(local, e.Prev)
				if err := VerifyEntry(e, e.Seq, prev); err != nil || (e.Seq == chain.Seq && e.Hash != chain.Prev) {
					return chain.Seq, fmt.Errorf("%w: %s: entry %d differs from the one verified before", ErrAuditBroken, name, e.Seq)
				}
				local = e.Hash
				continue
			}
			if err := chain.Next(e); err != nil {
				return chain.Seq, fmt.Errorf("%s: %w", name, err)
			}
			if chain.Seq == cp.Seq {
				if chain.Prev != cp.Hash {
					return chain.Seq, fmt.Errorf("%w: archived entry %d is not the one the checkpoint names", ErrAuditBroken, cp.Seq)
				}
				return chain.Seq, nil
			}
		}
	}
	return chain.Seq, fmt.Errorf("%w: the archive ends at entry %d, before the checkpoint at %d", ErrAuditBroken, chain.Seq, cp.Seq)
}

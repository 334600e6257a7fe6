// Package fsm is the replicated state machine: commands in, state out. State
// lives in a bbolt file so memory does not grow with the number of records.
// See DESIGN.md.
package fsm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

var (
	bMeta          = []byte("meta")
	bAuthorities   = []byte("authorities")
	bCerts         = []byte("certs")
	bCertsByExpiry = []byte("certs_by_expiry")
	bTokens        = []byte("tokens")
	bTokenIDs      = []byte("token_ids")
	bTokensByExp   = []byte("tokens_by_expiry")
	bAdmins        = []byte("admins")
	bNodes         = []byte("nodes")
	bProvisioners  = []byte("provisioners")
	bNonces        = []byte("nonces")
	bNoncesByExp   = []byte("nonces_by_expiry")
	bRevoked       = []byte("revoked")
	bCRLs          = []byte("crls")
	bCertsBySAN    = []byte("certs_by_san")
	bCertsByProv   = []byte("certs_by_provisioner")
	bCertsByProp   = []byte("certs_by_property")
	bTokensByProv  = []byte("tokens_by_provisioner")
	bCRLStale      = []byte("crl_stale")
	bAudit         = []byte("audit")

	// Digest leaves out the audit log and its index (a log of the state's
	// history, not state): AuditHead and VerifyAudit cover them.
	allBuckets = [][]byte{bMeta, bAuthorities, bCerts, bCertsByExpiry, bTokens, bTokenIDs, bTokensByExp, bAdmins, bNodes,
		bProvisioners, bNonces, bNoncesByExp, bRevoked, bCRLs, bCertsBySAN, bCertsByProv, bCertsByProp, bTokensByProv,
		bOCSPResponders, bSCEPRAs, bCRLStale, bAudit, bAuditIndex, bRecordDicts,
		bACMEAccounts, bACMEAccountKeys, bACMEOrders, bACMEOrdersByAcc, bACMEAuthzs, bACMEEAB, bACMEByExpiry, bACMEReplaced, bDevices}

	kApplied = []byte("applied_index")
	// kLogFormat: the newest log format of any entry applied to this state
	// (absent: 0). A binary that reads less refuses to open it, and the
	// leader refuses a joining node that reads less.
	kLogFormat = []byte("log_format")
)

// ErrNewerLogFormat: the state holds entries of a log format this binary
// does not read.
var ErrNewerLogFormat = errors.New("fsm: the state holds entries of a newer log format")

// FSM implements raft.BatchingFSM on top of a bbolt database.
type FSM struct {
	path string

	mu sync.RWMutex // guards db against the swap in Restore
	db *bolt.DB

	applied   atomic.Uint64
	logFormat atomic.Int64 // kLogFormat
	waitMu    sync.Mutex
	waitCh    chan struct{} // closed and replaced after every applied batch

	// auditReads counts the audit records (entries and index keys) that
	// queries read: what a query costs, for tests and a metric.
	auditReads atomic.Uint64

	// Records every request reads, decoded once per distinct bytes.
	authorities  decodedCache[Authority]
	provisioners decodedCache[Provisioner]
	// provisionersGen counts committed provisioner writes (and restores);
	// serverProvisioners is ServerProvisioners' answer as of one count.
	provisionersGen    atomic.Uint64
	serverProvisioners atomic.Pointer[serverProvisioners]
	dicts              dictCodecs // record DER compression, by dictionary
}

var _ raft.BatchingFSM = (*FSM)(nil)

// Open opens or creates the state database at path.
func Open(path string) (*FSM, error) {
	f := &FSM{path: path, waitCh: make(chan struct{})}
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	if lf := readLogFormat(db); lf > LogFormat {
		db.Close()
		return nil, fmt.Errorf("%w: %s holds log format %d, this binary reads up to %d: run the release that wrote it, or a newer one", ErrNewerLogFormat, path, lf, LogFormat)
	}
	f.db = db
	f.applied.Store(readApplied(db))
	f.logFormat.Store(int64(readLogFormat(db)))
	return f, nil
}

// readLogFormat is the stored format; a value this binary cannot have
// written (not one byte) reads as newer than any, so the state is refused
// rather than taken for format 0.
func readLogFormat(db *bolt.DB) int {
	var n int
	_ = db.View(func(tx *bolt.Tx) error {
		switch v := tx.Bucket(bMeta).Get(kLogFormat); len(v) {
		case 0:
		case 1:
			n = int(v[0])
		default:
			n = math.MaxInt32
		}
		return nil
	})
	return n
}

// The newest format is stored in one byte.
var _ [255 - LogFormat]struct{}

// HighestLogFormat is the newest log format of any entry applied here.
func (f *FSM) HighestLogFormat() int { return int(f.logFormat.Load()) }

func openDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 5 * time.Second,
		// A long snapshot read transaction blocks a writer that needs to grow
		// the mmap; a large initial mapping (address space only) avoids that.
		InitialMmapSize: 1 << 30,
		// The array freelist allocates first fit: single pages come from the
		// front, so the free runs the freelist itself needs (contiguous, at
		// every commit) stay whole. The map freelist hands out pages from
		// any run and fragmented them: under retention's churn its free pages
		// and the file grew without end (see fsm/DESIGN.md, Retention).
		FreelistType: bolt.FreelistArrayType,
		// The freelist is written at every commit (NoFreelistSync is not
		// set): without it, opening rebuilds it by reading every page,
		// which took 5.5 s at a million records, minutes at ten million,
		// on every restart. (Raft's log store, which stays small, skips it.)
	})
	if err != nil {
		return nil, fmt.Errorf("fsm: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = backfillAuditIndex(db)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("fsm: init %s: %w", path, err)
	}
	return db, nil
}

func readApplied(db *bolt.DB) uint64 {
	var n uint64
	_ = db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get(kApplied); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return n
}

// Path is the database file.
func (f *FSM) Path() string { return f.path }

// Close closes the database.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.db.Close()
}

// AppliedIndex is the last log index whose effects are in the database.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitApplied blocks until the state includes log index idx.
func (f *FSM) WaitApplied(ctx context.Context, idx uint64) error {
	for {
		f.waitMu.Lock()
		ch := f.waitCh
		f.waitMu.Unlock()
		if f.applied.Load() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *FSM) setApplied(idx uint64) {
	f.applied.Store(idx)
	f.waitMu.Lock()
	close(f.waitCh)
	f.waitCh = make(chan struct{})
	f.waitMu.Unlock()
}

// appendBuckets get their keys in increasing order (sequence numbers,
// time-ordered serials, expiry times; a provisioner's or a name's
// serials), so pages that split are filled nearly full instead of half:
// 100,000 issued certificates took 262 MiB instead of 358, and the name
// and provisioner indexes 99 and 67 bytes a record instead of 171 and
// 132. (bolt's default 50% suits random keys.)
var appendBuckets = [][]byte{bAudit, bCerts, bCertsByExpiry, bNoncesByExp, bTokensByExp, bCertsByProv, bCertsBySAN}

const appendFill = 0.95

// Apply applies one log entry.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in one bolt transaction, so a burst of
// issuances costs one fsync. Each entry's result is nil or a business
// refusal (*errs.Error).
// Entries at or below the stored applied index are skipped: with
// NoSnapshotRestoreOnStart raft replays entries the database already holds.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	results := make([]any, len(logs))
	if len(logs) == 0 {
		return results
	}
	last := logs[len(logs)-1].Index
	if last <= f.applied.Load() {
		return results
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	bt := &batchTx{f: f}
	err := f.db.Update(func(tx *bolt.Tx) error {
		for _, b := range appendBuckets {
			tx.Bucket(b).FillPercent = appendFill
		}
		bt.tx = tx
		for i, l := range logs {
			if l.Index <= f.applied.Load() || l.Type != raft.LogCommand {
				continue
			}
			results[i] = bt.applyOne(l)
		}
		bt.flushAudit()
		if bt.format > f.logFormat.Load() {
			if err := tx.Bucket(bMeta).Put(kLogFormat, []byte{byte(bt.format)}); err != nil {
				return err
			}
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], last)
		return tx.Bucket(bMeta).Put(kApplied, v[:])
	})
	if err != nil {
		// The disk failed under us; continuing would let raft believe these
		// entries are applied. Stop the node instead.
		panic(fmt.Sprintf("fsm: commit batch ending at %d: %v", last, err))
	}
	if bt.format > f.logFormat.Load() {
		f.logFormat.Store(bt.format)
	}
	if bt.provisioners {
		f.provisionersGen.Add(1) // after the commit: a reader never caches older state under the new count
	}
	f.setApplied(last)
	return results
}

// applyOne applies one log entry: its result is nil or a refusal, or for a
// batch entry a []any with one such result per envelope, in order.
func (bt *batchTx) applyOne(l *raft.Log) any {
	if !isBatch(l.Data) {
		return bt.applyEnvelope(l.Index, l.Data)
	}
	bt.format = max(bt.format, 1)
	envs, err := SplitBatch(l.Data)
	if err != nil {
		panic(fmt.Sprintf("fsm: index %d: %v", l.Index, err))
	}
	results := make([]any, len(envs))
	for i, e := range envs {
		results[i] = bt.applyEnvelope(l.Index, e)
	}
	return results
}

func (bt *batchTx) applyEnvelope(index uint64, data []byte) any {
	env, err := DecodeEnvelope(data)
	if err != nil {
		panic(fmt.Sprintf("fsm: index %d: %v", index, err))
	}
	h, ok := handlers[env.Type]
	if !ok || env.Version > h.version || env.Version == 0 {
		// Written by a newer node than this one: applying anything else
		// would diverge. Upgrades gate new commands on the cluster version.
		panic(fmt.Sprintf("fsm: index %d: command %d version %d not supported by this binary", index, env.Type, env.Version))
	}
	format := env.Format()
	if len(data) > 0 && data[0] != '{' {
		format = max(format, 1) // a binary envelope
	}
	bt.format = max(bt.format, int64(format))
	a := &applyCtx{f: bt.f, tx: bt.tx, bt: bt, index: index, now: time.Unix(0, env.Time).UTC(), env: env}
	err = h.run(a)
	appendAudit(a, h.name, err)
	if err != nil {
		return err
	}
	return nil
}

// view runs fn in a read transaction.
func (f *FSM) view(fn func(tx *bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.db.View(fn)
}

// Snapshot captures a consistent read-only view; Persist streams it while
// Apply keeps running.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("fsm: snapshot: %w", err)
	}
	return &snapshot{tx: tx}, nil
}

type snapshot struct{ tx *bolt.Tx }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.tx.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() { _ = s.tx.Rollback() }

// WriteTo writes a consistent copy of the database (a snapshot) to w.
func (f *FSM) WriteTo(w io.Writer) (int64, error) {
	var n int64
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Restore replaces all state with a snapshot stream: it is written to a
// temporary file, checked, and swapped in.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := f.path + ".restore"
	if err := writeFileSync(tmp, rc); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fsm: restore: %w", err)
	}
	check, err := openDB(tmp)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fsm: restore: snapshot is not a valid database: %w", err)
	}
	idx, lf := readApplied(check), readLogFormat(check)
	check.Close()
	if lf > LogFormat {
		os.Remove(tmp)
		return fmt.Errorf("fsm: restore: %w: log format %d, this binary reads up to %d", ErrNewerLogFormat, lf, LogFormat)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.db.Close(); err != nil {
		return fmt.Errorf("fsm: restore: close: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	db, err := openDB(f.path)
	if err != nil {
		// The old file is gone and the new one does not open: stop the node.
		panic(fmt.Sprintf("fsm: reopen after restore: %v", err))
	}
	f.db = db
	f.logFormat.Store(int64(lf))
	f.provisionersGen.Add(1)
	f.setApplied(idx)
	return nil
}

func writeFileSync(path string, r io.Reader) error {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Reset deletes all state. A node that joins a cluster with an empty Raft log
// must not keep a database from an earlier life: its entries would be skipped.
func (f *FSM) Reset() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.db.Close(); err != nil {
		return err
	}
	if err := os.Remove(f.path); err != nil && !os.IsNotExist(err) {
		return err
	}
	db, err := openDB(f.path)
	if err != nil {
		return err
	}
	f.db = db
	f.applied.Store(0)
	return nil
}

package authority

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// OCSPStore keeps a node's signed OCSP answers in a bbolt file of its own,
// behind the memory cache, until they are no longer served (half their
// validity). With it, an answer is signed once per key and half validity
// however many certificates are asked about: cycling through more of them
// than memory holds costs bolt reads, not signatures. The file is this
// node's alone, never replicated: losing it costs only signing again.
//
// Writes never wait on the request path: a signed answer goes to a pending
// set that lookups see, and one goroutine commits whatever is pending in
// one transaction, so commits (each synced) are at most one per new
// signature and fewer under load. Nothing is written per request.
type OCSPStore struct {
	db  *bolt.DB
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	room    sync.Cond // signalled when pending empties or the store closes
	pending map[storeKey]storedAnswer
	writing map[storeKey]storedAnswer // being committed
	closed  bool

	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	warned atomic.Int64 // unix time of the last warning
}

// OCSPStoreOptions tunes an OCSPStore; zero values take the defaults.
type OCSPStoreOptions struct {
	Now    func() time.Time // for pruning; time.Now
	Logger *slog.Logger
}

// storeKey is the SHA-256 of an answer's cache key: fixed size on disk,
// whatever the length of the signer's key URI.
type storeKey [sha256.Size]byte

type storedAnswer struct {
	der   []byte
	stale time.Time
}

var (
	// answers: storeKey -> stale (8 bytes, unix seconds, big endian) + DER.
	bOCSPAnswers = []byte("answers")
	// expiry: stale (8 bytes) + storeKey -> nothing, oldest first, for pruning.
	bOCSPExpiry = []byte("expiry")
	bOCSPMeta   = []byte("meta")
	// ocspStoreFormat changes when the layout does: a file of another
	// format is emptied, which costs only signing again.
	ocspStoreFormat = []byte("1")
)

const (
	// ocspStoreMaxPending bounds answers signed but not yet committed
	// (about 1.5 KB each): past it, signers wait for the disk.
	ocspStoreMaxPending = 4096
	ocspStorePruneEvery = 5 * time.Minute
	ocspStorePruneBatch = 10000 // deletions per transaction
)

// OpenOCSPStore opens (or creates) the answer store at path. A file that
// does not open as a store is replaced by an empty one, with a warning.
func OpenOCSPStore(path string, o OCSPStoreOptions) (*OCSPStore, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	log := o.Logger.With("component", "ocsp-store")
	db, err := openOCSPDB(path)
	if err != nil && !errors.Is(err, berrors.ErrTimeout) {
		log.Warn("OCSP answer store unreadable; starting an empty one (answers are signed again as they are asked for)", "path", path, "err", err)
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, fmt.Errorf("ocsp store: %w (and removing it: %v)", err, rerr)
		}
		db, err = openOCSPDB(path)
	}
	if err != nil {
		return nil, fmt.Errorf("ocsp store: open %s: %w", path, err)
	}
	s := &OCSPStore{db: db, log: log, now: o.Now, pending: map[storeKey]storedAnswer{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.room.L = &s.mu
	go s.run()
	return s, nil
}

// openOCSPDB opens the file and checks its format. bbolt panics on some
// damaged files; that is one more reason to start afresh, not to crash.
func openOCSPDB(path string) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			db, err = nil, fmt.Errorf("damaged file: %v", r)
		}
	}()
	// First-fit allocation, as the state's: answers are rewritten at every
	// refresh, and the map freelist let such churn grow the file (fsm/DESIGN.md).
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, FreelistType: bolt.FreelistArrayType})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bOCSPMeta)
		if err != nil {
			return err
		}
		if f := meta.Get([]byte("format")); f != nil && !bytes.Equal(f, ocspStoreFormat) {
			for _, b := range [][]byte{bOCSPAnswers, bOCSPExpiry} {
				if err := tx.DeleteBucket(b); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
					return err
				}
			}
		}
		for _, b := range [][]byte{bOCSPAnswers, bOCSPExpiry} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return meta.Put([]byte("format"), ocspStoreFormat)
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Path is the store's file.
func (s *OCSPStore) Path() string { return s.db.Path() }

// get returns the answer stored under key if it is still served at now:
// from the pending set, or with one bolt read.
func (s *OCSPStore) get(key string, now time.Time) ([]byte, time.Time, bool) {
	if s == nil {
		return nil, time.Time{}, false
	}
	k := storeKey(sha256.Sum256([]byte(key)))
	s.mu.Lock()
	a, ok := s.pending[k]
	if !ok {
		a, ok = s.writing[k]
	}
	s.mu.Unlock()
	if !ok {
		err := s.db.View(func(tx *bolt.Tx) error {
			v := tx.Bucket(bOCSPAnswers).Get(k[:])
			if len(v) <= 8 {
				return nil
			}
			a.stale = time.Unix(int64(binary.BigEndian.Uint64(v)), 0)
			if now.Before(a.stale) {
				a.der, ok = bytes.Clone(v[8:]), true // v lives only as long as tx
			}
			return nil
		})
		if err != nil {
			s.warn("OCSP answer store read failed; signing afresh", err)
		}
	}
	if !ok || !now.Before(a.stale) {
		return nil, time.Time{}, false
	}
	return a.der, a.stale, true
}

// put keeps a new answer, served until stale. It returns at once unless
// ocspStoreMaxPending answers already wait for the disk.
func (s *OCSPStore) put(key string, der []byte, stale time.Time) {
	if s == nil {
		return
	}
	k := storeKey(sha256.Sum256([]byte(key)))
	s.mu.Lock()
	for len(s.pending) >= ocspStoreMaxPending && !s.closed {
		s.room.Wait()
	}
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.pending[k] = storedAnswer{der: der, stale: stale.Truncate(time.Second)}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // a commit is already due
	}
}

func (s *OCSPStore) run() {
	defer close(s.done)
	prune := time.NewTicker(ocspStorePruneEvery)
	defer prune.Stop()
	s.prune() // what went stale while the node was down
	for {
		select {
		case <-s.wake:
			s.flush()
		case <-prune.C:
			s.prune()
		case <-s.stop:
			s.flush()
			return
		}
	}
}

// flush commits every pending answer in one transaction.
func (s *OCSPStore) flush() {
	s.mu.Lock()
	batch := s.pending
	if len(batch) == 0 {
		s.mu.Unlock()
		return
	}
	s.pending, s.writing = map[storeKey]storedAnswer{}, batch
	s.room.Broadcast()
	s.mu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		answers, expiry := tx.Bucket(bOCSPAnswers), tx.Bucket(bOCSPExpiry)
		for k, a := range batch {
			if old := answers.Get(k[:]); len(old) >= 8 {
				if err := expiry.Delete(expiryKey(old[:8], k)); err != nil {
					return err
				}
			}
			st := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(a.der)), uint64(a.stale.Unix()))
			if err := answers.Put(k[:], append(st, a.der...)); err != nil {
				return err
			}
			if err := expiry.Put(expiryKey(st[:8], k), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// The answers stay in the memory cache; the disk may be full.
		s.warn("OCSP answers not stored; they may be signed again once out of memory", err)
	}
	s.mu.Lock()
	s.writing = nil
	s.mu.Unlock()
}

func expiryKey(stale []byte, k storeKey) []byte {
	return append(append(make([]byte, 0, 8+len(k)), stale...), k[:]...)
}

func (s *OCSPStore) prune() {
	if _, err := s.Prune(s.now()); err != nil {
		s.warn("pruning stale OCSP answers failed", err)
	}
}

// Prune removes the answers no longer served at now (past half their
// validity) and returns how many. The store runs it every few minutes.
func (s *OCSPStore) Prune(now time.Time) (int, error) {
	limit := binary.BigEndian.AppendUint64(nil, uint64(now.Unix())+1)
	total := 0
	for {
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			answers, expiry := tx.Bucket(bOCSPAnswers), tx.Bucket(bOCSPExpiry)
			c := expiry.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) < 0 && n < ocspStorePruneBatch; k, _ = c.First() {
				k = bytes.Clone(k) // it points into a page the deletes change
				if err := answers.Delete(k[8:]); err != nil {
					return err
				}
				if err := expiry.Delete(k); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		total += n
		if err != nil || n < ocspStorePruneBatch {
			return total, err
		}
	}
}

// count is the number of answers on disk.
func (s *OCSPStore) count() int {
	n := 0
	s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bOCSPAnswers).Stats().KeyN
		return nil
	})
	return n
}

// Close commits what is pending and closes the file.
func (s *OCSPStore) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.room.Broadcast()
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return s.db.Close()
}

// warn logs at most once a minute: it may concern every request.
func (s *OCSPStore) warn(msg string, err error) {
	now := time.Now().Unix()
	if last := s.warned.Load(); now-last >= 60 && s.warned.CompareAndSwap(last, now) {
		s.log.Warn(msg, "err", err)
	}
}

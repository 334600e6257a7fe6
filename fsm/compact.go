package fsm

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/quorumca/quorumca/internal/atomicfile"
	bolt "go.etcd.io/bbolt"
)

// compactTxBytes is how much compaction copies per transaction.
const compactTxBytes = 64 << 20

// Compact rewrites a stopped node's state database at path without its
// free pages, every page full, and swaps the copy in. bbolt never returns
// pages to the file system: after retention first removes years of
// records, or as free space fragments under churn, the file keeps its
// largest size; this gives the space back. The state itself, its applied
// index and log format, is unchanged. It returns the file's size before
// and after.
func Compact(path string) (before, after int64, err error) {
	src, err := openOffline(path)
	if err != nil {
		return 0, 0, err
	}
	// The shared lock is held until the copy has replaced the file, so a
	// node cannot start on the old one meanwhile.
	defer src.Close()
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	before = st.Size()

	tmp := path + ".compact"
	os.Remove(tmp) // left by an interrupted run
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistArrayType})
	if err != nil {
		return 0, 0, err
	}
	err = bolt.Compact(dst, src, compactTxBytes)
	if err == nil {
		err = dst.Sync() // once, at the end: a crash before the rename leaves the original
	}
	var applied, wantApplied uint64
	var lf, wantLF int
	if err == nil {
		applied, lf = readApplied(dst), readLogFormat(dst)
		wantApplied, wantLF = readApplied(src), readLogFormat(src)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil && (applied != wantApplied || lf != wantLF) {
		err = fmt.Errorf("the copy holds applied index %d, log format %d; the original %d, %d", applied, lf, wantApplied, wantLF)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("fsm: compact %s: %w", path, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return 0, 0, err
	}
	if st, err = os.Stat(path); err != nil {
		return 0, 0, err
	}
	return before, st.Size(), nil
}

package fsm

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A state or snapshot storing a log format this binary does not read, or
// one it cannot have written (not one byte), is refused by Restore and
// Open. (Before, any value not exactly one byte read as format 0.)
func TestAStoredLogFormatThisBinaryCannotReadIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stored  []byte
		refused bool
	}{
		{"this binary's", []byte{LogFormat}, false},
		{"the next", []byte{LogFormat + 1}, true},
		{"255", []byte{255}, true},
		{"256, two bytes", []byte{1, 0}, true},
		{"this binary's, as a uint64", []byte{0, 0, 0, 0, 0, 0, 0, LogFormat}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := openTest(t)
			if err := src.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bMeta).Put(kLogFormat, tc.stored)
			}); err != nil {
				t.Fatal(err)
			}
			var snap bytes.Buffer
			if _, err := src.WriteTo(&snap); err != nil {
				t.Fatal(err)
			}
			dst := openTest(t)
			err := dst.Restore(io.NopCloser(&snap))
			if got := errors.Is(err, ErrNewerLogFormat); got != tc.refused {
				t.Errorf("restore of a state storing log_format %x: %v (HighestLogFormat %d), want refused %v", tc.stored, err, dst.HighestLogFormat(), tc.refused)
			}
			// And Open of the same file.
			path := filepath.Join(t.TempDir(), "state.db")
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			f.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(kLogFormat, tc.stored) })
			f.Close()
			f2, err := Open(path)
			if f2 != nil {
				f2.Close()
			}
			if got := errors.Is(err, ErrNewerLogFormat); got != tc.refused {
				t.Errorf("open of a state storing log_format %x: %v, want refused %v", tc.stored, err, tc.refused)
			}
		})
	}
}

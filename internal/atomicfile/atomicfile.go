// Package atomicfile replaces files so that a reader sees the old content
// or the new, never a mix, and a crash leaves one of the two.
package atomicfile

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
)

// Write replaces path with data (mode applies to the new file): written to a
// temporary file beside it, synced, renamed over it, and the directory
// synced so the rename survives a power cut.
func Write(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, true)
}

// WriteNoSync is Write without the syncs: still never a torn file, but
// after a power cut the old content may be back. For files that may lag.
func WriteNoSync(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, false)
}

// WriteFrom is Write with the content read from r, for files too large to
// hold in memory.
func WriteFrom(path string, r io.Reader, mode os.FileMode) error {
	return writeFrom(path, r, mode, true)
}

func write(path string, data []byte, mode os.FileMode, durable bool) error {
	return writeFrom(path, bytes.NewReader(data), mode, durable)
}

func writeFrom(path string, r io.Reader, mode os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if !durable {
		return nil
	}
	SyncDir(dir)
	return nil
}

// SyncDir syncs a directory, so a rename or a new file in it survives a
// power cut.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Package archive keeps what the hot state lets go: certificate records
// past their retention (and, later, audit segments), as objects outside
// the cluster, so compliance keeps a full inventory. An object is written
// whole under a name its writer derives from what it holds, so writing it
// again after a failure replaces it with the same bytes.
package archive

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/quorumca/quorumca/internal/atomicfile"
)

// Store is where archived objects go.
type Store interface {
	// Put writes an object whole, replacing one of that name.
	Put(ctx context.Context, name string, data []byte) error
	// PutFile is Put with the content read from f, from its start: for
	// objects too large to hold in memory (snapshots of the state).
	PutFile(ctx context.Context, name string, f *os.File) error
	// Get reads an object (ErrNotFound if there is none).
	Get(ctx context.Context, name string) ([]byte, error)
	// List names the objects under prefix, in order.
	List(ctx context.Context, prefix string) ([]string, error)
	// String says where the store is, for logs.
	String() string
}

// ErrNotFound: no object of that name.
var ErrNotFound = errors.New("archive: no such object")

// openers open stores by URI scheme.
var openers = map[string]func(ctx context.Context, u *url.URL) (Store, error){
	"file": openFile,
}

// Open opens the store a URI names: file:///absolute/dir, or
// s3://bucket/prefix (see openS3).
func Open(ctx context.Context, uri string) (Store, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("archive %q: %w", uri, err)
	}
	open, ok := openers[u.Scheme]
	if !ok {
		return nil, fmt.Errorf("archive %q: scheme %q is not file or s3", uri, u.Scheme)
	}
	return open(ctx, u)
}

// CheckName refuses an object name that could leave the store's root:
// names are relative, slash-separated, of plain segments.
func CheckName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") {
		return fmt.Errorf("archive: bad object name %q", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("archive: bad object name %q", name)
		}
	}
	return nil
}

// Gzip returns lines, each followed by a newline, gzip-compressed: the
// form of every archived object ("JSON lines").
func Gzip(lines [][]byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	for _, l := range lines {
		zw.Write(l)
		zw.Write([]byte{'\n'})
	}
	zw.Close()
	return b.Bytes()
}

// Gunzip reads an object written by Gzip back into its lines.
func Gunzip(data []byte) ([][]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	all, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, l := range bytes.Split(all, []byte{'\n'}) {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out, nil
}

// fileStore keeps objects as files under a directory.
type fileStore struct{ dir string }

func openFile(_ context.Context, u *url.URL) (Store, error) {
	if u.Host != "" || !filepath.IsAbs(u.Path) {
		return nil, fmt.Errorf("archive %q: want file:///absolute/path", u.String())
	}
	if err := os.MkdirAll(u.Path, 0o700); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	return &fileStore{dir: filepath.Clean(u.Path)}, nil
}

func (s *fileStore) String() string { return "file://" + s.dir }

// Put replaces the object's file atomically and durably: an object is
// there whole or not at all.
func (s *fileStore) Put(_ context.Context, name string, data []byte) error {
	if err := CheckName(name); err != nil {
		return err
	}
	path := filepath.Join(s.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}

func (s *fileStore) PutFile(_ context.Context, name string, f *os.File) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	path := filepath.Join(s.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFrom(path, f, 0o600)
}

func (s *fileStore) Get(_ context.Context, name string) ([]byte, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(s.dir, filepath.FromSlash(name)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return b, err
}

func (s *fileStore) List(_ context.Context, prefix string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(s.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") { // atomicfile's temporary files

			return nil
		}
		rel, err := filepath.Rel(s.dir, path)
		if err != nil {
			return err
		}
		if name := filepath.ToSlash(rel); strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"testing"
)

// storeContract is what every store must do; each store's test runs it.
func storeContract(t *testing.T, s Store) {
	t.Helper()
	ctx := context.Background()
	lines := [][]byte{[]byte(`{"serial":"01"}`), []byte(`{"serial":"02"}`)}
	for _, name := range []string{"certs/2026/12/05/a.jsonl.gz", "certs/2026/12/06/b.jsonl.gz", "audit/x.jsonl.gz"} {
		if err := s.Put(ctx, name, Gzip(lines)); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
	}
	// Written again: replaced, not doubled.
	if err := s.Put(ctx, "certs/2026/12/05/a.jsonl.gz", Gzip(lines)); err != nil {
		t.Fatal(err)
	}
	got, err := s.List(ctx, "certs/")
	if err != nil || !slices.Equal(got, []string{"certs/2026/12/05/a.jsonl.gz", "certs/2026/12/06/b.jsonl.gz"}) {
		t.Fatalf("list: %q %v", got, err)
	}
	data, err := s.Get(ctx, "certs/2026/12/05/a.jsonl.gz")
	if err != nil {
		t.Fatal(err)
	}
	back, err := Gunzip(data)
	if err != nil || len(back) != 2 || string(back[1]) != `{"serial":"02"}` {
		t.Fatalf("read back %q %v", back, err)
	}
	if _, err := s.Get(ctx, "certs/none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing object: %v", err)
	}
	for _, bad := range []string{"", "/etc/passwd", "../x", "a/../../x", "a//b", `a\b`} {
		if err := s.Put(ctx, bad, nil); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}

	// From a file, whole, whatever the file's offset (a snapshot just
	// written leaves it at its end).
	f, err := os.CreateTemp(t.TempDir(), "object")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	if _, err := f.Write(big); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFile(ctx, "snapshots/quorumca-1.snap", f); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "snapshots/quorumca-1.snap"); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("put from a file: %d bytes back, %v", len(got), err)
	}
	if err := s.PutFile(ctx, "../x", f); err == nil {
		t.Error("name ../x accepted from a file")
	}
}

func TestFileStore(t *testing.T) {
	s, err := Open(context.Background(), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	storeContract(t, s)
	for _, bad := range []string{"file://host/x", "file:relative", "ftp:///x"} {
		if _, err := Open(context.Background(), bad); err == nil {
			t.Errorf("%s opened", bad)
		}
	}
}

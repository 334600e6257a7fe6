package archive

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// fakeS3 is an S3-compatible server on loopback, in memory, holding one
// bucket, "archive"; it keeps the headers of each PutObject and counts
// ListObjectsV2 calls.
type fakeS3 struct {
	backend  *s3mem.Backend
	endpoint string

	mu    sync.Mutex
	puts  []http.Header
	lists int
}

func newFakeS3(t *testing.T) *fakeS3 {
	t.Helper()
	// Static credentials, and nothing that could send the SDK elsewhere
	// (instance metadata, a developer's profile or endpoint).
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIDTEST",
		"AWS_SECRET_ACCESS_KEY":       "secret",
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  "us-east-1",
		"AWS_PROFILE":                 "",
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             empty,
		"AWS_SHARED_CREDENTIALS_FILE": empty,
		"AWS_ENDPOINT_URL":            "",
		"AWS_ENDPOINT_URL_S3":         "",
	} {
		t.Setenv(k, v)
	}

	f := &fakeS3{backend: s3mem.New()}
	if err := f.backend.CreateBucket("archive"); err != nil {
		t.Fatal(err)
	}
	fake := gofakes3.New(f.backend).Server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		switch {
		case r.Method == http.MethodPut:
			f.puts = append(f.puts, r.Header.Clone())
			body, _ := io.ReadAll(r.Body)
			// The checksum must be the body's, not just present.
			sum := binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(body))
			if got := r.Header.Get("X-Amz-Checksum-Crc32"); got != base64.StdEncoding.EncodeToString(sum) {
				f.puts[len(f.puts)-1].Set("Bad-Checksum", got)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		case r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2":
			f.lists++
		}
		f.mu.Unlock()
		fake.ServeHTTP(w, r)
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	f.endpoint = srv.URL
	return f
}

// takePuts returns the PutObject headers kept so far and forgets them.
func (f *fakeS3) takePuts() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.puts
	f.puts = nil
	return p
}

func (f *fakeS3) listCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists
}

func (f *fakeS3) open(t *testing.T, uri string) Store {
	t.Helper()
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
	}
	s, err := Open(context.Background(), uri+sep+"endpoint="+url.QueryEscape(f.endpoint))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestS3Store(t *testing.T) {
	f := newFakeS3(t)
	// The checksum must go even when the SDK is told to send one only
	// where an operation demands it (PutObject does not).
	t.Setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
	s := f.open(t, "s3://archive/ca-1")
	if s.String() != "s3://archive/ca-1/" {
		t.Errorf("String: %s", s)
	}
	storeContract(t, s)
	puts := f.takePuts()
	if len(puts) != 5 {
		t.Fatalf("%d PutObject calls, want 5", len(puts))
	}
	for _, h := range puts {
		if h.Get("X-Amz-Checksum-Crc32") == "" || h.Get("Bad-Checksum") != "" {
			t.Fatalf("PutObject without a right checksum: %v", h)
		}
		if h.Get("X-Amz-Server-Side-Encryption") != "" {
			t.Fatalf("encryption asked for: %v", h)
		}
	}

	for uri, want := range map[string][2]string{
		"s3://archive/ca-1?sse=AES256":                             {"AES256", ""},
		"s3://archive/ca-1?sse=aws:kms":                            {"aws:kms", ""},
		"s3://archive/ca-1?sse=aws:kms&kms_key_id=alias%2Farchive": {"aws:kms", "alias/archive"},
	} {
		if err := f.open(t, uri).Put(context.Background(), "x", []byte("x")); err != nil {
			t.Fatal(err)
		}
		h := f.takePuts()[0]
		if h.Get("X-Amz-Server-Side-Encryption") != want[0] || h.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id") != want[1] {
			t.Errorf("%s: sent %q %q", uri, h.Get("X-Amz-Server-Side-Encryption"), h.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"))
		}
	}
}

func TestS3Prefix(t *testing.T) {
	f := newFakeS3(t)
	ctx := context.Background()
	// Neighbours that a prefix without its slash would take in.
	for _, key := range []string{"arch", "archive-other/a/b", "arch-x/a/b"} {
		if _, err := f.backend.PutObject("archive", key, map[string]string{}, strings.NewReader("n"), 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	for uri, key := range map[string]string{
		"s3://archive/arch":      "arch/a/b",
		"s3://archive/arch/":     "arch/a/b",
		"s3://archive//arch//":   "arch/a/b",
		"s3://archive/arch/sub/": "arch/sub/a/b",
		"s3://archive":           "a/b",
		"s3://archive/":          "a/b",
	} {
		s := f.open(t, uri)
		if err := s.Put(ctx, "a/b", []byte(uri)); err != nil {
			t.Fatal(err)
		}
		obj, err := f.backend.GetObject("archive", key, nil)
		if err != nil {
			t.Fatalf("%s: %s not written: %v", uri, key, err)
		}
		b, _ := io.ReadAll(obj.Contents)
		obj.Contents.Close()
		if string(b) != uri {
			t.Fatalf("%s: %s holds %q", uri, key, b)
		}
		if got, err := s.Get(ctx, "a/b"); err != nil || string(got) != uri {
			t.Fatalf("%s: get %q %v", uri, got, err)
		}
	}
	got, err := f.open(t, "s3://archive/arch").List(ctx, "")
	if err != nil || !slices.Equal(got, []string{"a/b", "sub/a/b"}) {
		t.Fatalf("list: %q %v", got, err)
	}
}

func TestS3ListPages(t *testing.T) {
	f := newFakeS3(t)
	s := f.open(t, "s3://archive/p")
	// Written straight to the backend: the listing is what is tested.
	const n = 2345
	var want []string
	for i := range n {
		name := fmt.Sprintf("certs/%05d.jsonl.gz", n-i)
		want = append(want, name)
		if _, err := f.backend.PutObject("archive", "p/"+name, map[string]string{}, strings.NewReader("x"), 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(want)
	if _, err := f.backend.PutObject("archive", "q/certs/x", map[string]string{}, strings.NewReader("x"), 1, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.List(context.Background(), "certs/")
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("list: %d names, err %v", len(got), err)
	}
	if c := f.listCalls(); c < 3 {
		t.Fatalf("%d ListObjectsV2 calls for %d objects", c, n)
	}
}

func TestS3OpenErrors(t *testing.T) {
	f := newFakeS3(t)
	_, err := Open(context.Background(), "s3://nosuch/p?endpoint="+url.QueryEscape(f.endpoint))
	if err == nil || !strings.Contains(err.Error(), `no bucket "nosuch"`) {
		t.Fatalf("unknown bucket: %v", err)
	}
	// A bucket gone after Open is no missing object.
	if err := f.backend.CreateBucket("gone"); err != nil {
		t.Fatal(err)
	}
	s := f.open(t, "s3://gone/p")
	if err := f.backend.DeleteBucket("gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "x"); err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "NoSuchBucket") {
		t.Fatalf("get from a bucket gone: %v", err)
	}

	for _, bad := range []string{
		"s3:///p", "s3:bucket/p", "s3://u:p@b/p", "s3://b/a//c", "s3://b/a/../c",
		"s3://b/p?sse=aws:kms:dsse", "s3://b/p?kms_key_id=k", "s3://b/p?sse=AES256&kms_key_id=k",
		"s3://b/p?kms_key=k",
	} {
		if _, err := Open(context.Background(), bad); err == nil {
			t.Errorf("%s opened", bad)
		}
	}
}

package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/time/rate"

	"github.com/quorumca/quorumca/api"
	"github.com/quorumca/quorumca/client"
	"github.com/quorumca/quorumca/cluster"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
)

// metric reads one value from a node's /v1/metrics.
func (c *testCluster) metric(tn *testNode, name string, labels map[string]string) float64 {
	c.t.Helper()
	r := c.do(tn, "GET", "/v1/metrics", nil, "")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		c.t.Fatal(err)
	}
	if _, ok := families[name]; !ok {
		return 0 // a vector with no series yet
	}
	return metricValue(c.t, families, name, labels)
}

// follow opens an audit follow; cancel ends it.
func (c *testCluster) follow(tn *testNode, query, bearer string) (*http.Response, <-chan fsm.AuditEntry, context.CancelFunc) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+tn.node.APIAddr()+"/v1/admin/audit?follow=true&"+query, nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := c.client.Transport.RoundTrip(req)
	if err != nil {
		cancel()
		c.t.Fatalf("follow: %v", err)
	}
	entries := make(chan fsm.AuditEntry, 1000)
	if resp.StatusCode == http.StatusOK {
		go func() {
			defer close(entries)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var e fsm.AuditEntry
				if json.Unmarshal(sc.Bytes(), &e) == nil {
					entries <- e
				}
			}
		}()
	}
	c.t.Cleanup(func() { cancel(); resp.Body.Close() })
	return resp, entries, cancel
}

func next(t *testing.T, ch <-chan fsm.AuditEntry) fsm.AuditEntry {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("the follow ended")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no entry followed within 10s")
	}
	return fsm.AuditEntry{}
}

// Lists are pages that carry their cursor; a follow starts at the newest
// entry unless asked to start earlier, and a filtered follow reads only
// what it sends, however much else happens.
func TestAuditPagesAndFollows(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	for range 5 {
		c.mintToken(n, "1h", "x.example")
	}
	var seqs []uint64
	var last struct {
		Entries   []fsm.AuditEntry
		More      bool
		NextAfter uint64 `json:"next_after"`
	}
	for after, pages := uint64(0), 0; ; pages++ {
		r := c.do(n, "GET", fmt.Sprintf("/v1/admin/audit?command=token_create&limit=2&after=%d", after), nil, c.admin)
		if r.status != http.StatusOK || pages > 10 {
			t.Fatalf("page %d: %d %s", pages, r.status, r.body)
		}
		last.Entries = nil
		r.decode(t, &last)
		for _, e := range last.Entries {
			seqs = append(seqs, e.Seq)
		}
		after = last.NextAfter
		if !last.More {
			break
		}
	}
	head, _ := n.node.FSM().AuditHead()
	if len(seqs) != 5 || last.NextAfter != head {
		t.Errorf("paged token_create entries %v, ending at %d; want 5 ending at the head %d", seqs, last.NextAfter, head)
	}
	for _, bad := range []string{"after=x", "limit=0", "limit=1001", "after=-1"} {
		if r := c.do(n, "GET", "/v1/admin/audit?"+bad, nil, c.admin); r.status != http.StatusBadRequest || r.errorCode() != "bad_request" {
			t.Errorf("%s: %d %s", bad, r.status, r.body)
		}
	}

	// Without after=, a follow streams what is appended from now on.
	_, all, _ := c.follow(n, "", c.admin)
	// A filtered follow, while 30 other entries are appended, reads only the
	// one it sends.
	_, revokes, _ := c.follow(n, "command=revoke", c.admin)
	h := c.enrollHolder(n, "followed.example")
	before := n.node.FSM().AuditReads()
	for range 30 {
		c.mintToken(n, "1h", "x.example")
	}
	c.do(n, "POST", "/v1/revoke", map[string]string{"serial": h.s.Serial, "reason": "superseded"}, c.admin)
	if e := next(t, revokes); e.Command != "revoke" || !strings.Contains(e.Note, h.s.Serial) {
		t.Errorf("filtered follow sent %+v", e)
	}
	if e := next(t, all); e.Seq != head+1 {
		t.Errorf("the follow began at entry %d, want %d, the first after it started", e.Seq, head+1)
	}
	// The unfiltered follow reads the 34 new entries (and their index keys
	// when it pages); the filtered one 2 records. Before the index, the
	// filtered follow read the whole log at every change.
	if read := n.node.FSM().AuditReads() - before; read > 2*(34+2)+10 {
		t.Errorf("two follows read %d audit records for 34 new entries", read)
	}
}

// Follows are capped per admin and per node: 429 with Retry-After beyond.
func TestAuditFollowsAreCapped(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.configure = func(cfg *Config) { cfg.Streams = api.StreamLimits{MaxFollows: 3, MaxFollowsPerAdmin: 2} }
	})
	n := c.nodes[0]
	auditor := c.adminToken(n, "ann", "auditor")
	_, _, cancel := c.follow(n, "", c.admin)
	c.follow(n, "", c.admin)
	refused := func(bearer, what string) {
		t.Helper()
		resp, _, _ := c.follow(n, "", bearer)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too_many_streams") {
			t.Errorf("%s: %d %s", what, resp.StatusCode, body)
		}
	}
	refused(c.admin, "a third follow of one admin")
	if resp, _, _ := c.follow(n, "", auditor); resp.StatusCode != http.StatusOK {
		t.Fatalf("another admin's follow: %d", resp.StatusCode)
	}
	refused(auditor, "a fourth follow on the node")
	cancel()
	testwait.For(t, 10*time.Second, "the closed follow to be released", func() bool {
		return c.metric(n, "quorumca_api_streams", map[string]string{"kind": "audit_follow"}) == 2
	})
	if resp, _, _ := c.follow(n, "", c.admin); resp.StatusCode != http.StatusOK {
		t.Errorf("a follow after one closed: %d", resp.StatusCode)
	}
}

// smallReceiveBuffer makes a client socket that the server fills quickly.
func smallReceiveBuffer(_, _ string, rc syscall.RawConn) error {
	var err error
	rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	return err
}

// A client that stops reading a follow or a snapshot download is cut off
// once one write has waited the stream write timeout; a client that reads
// slowly gets everything, however long it takes. An upload that stalls is
// answered 408 once one read has waited as long.
func TestStalledStreamsAreCutOff(t *testing.T) {
	// Long enough that a loaded machine's pauses (the race detector, other
	// packages' tests) never stall a steady reader's socket for as long.
	const writeTimeout = 3 * time.Second
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.configure = func(cfg *Config) { cfg.Streams = api.StreamLimits{WriteTimeout: writeTimeout} }
	})
	n := c.nodes[0]
	streams := func(kind string) float64 {
		return c.metric(n, "quorumca_api_streams", map[string]string{"kind": kind})
	}
	r := c.do(n, "POST", "/v1/admin/tokens?format=text", map[string]any{"sans": []string{"dev-{n}.example"}, "count": 10000}, c.admin)
	if r.status != http.StatusCreated {
		t.Fatalf("mint: %d %s", r.status, r.body)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.pki.Root())

	t.Run("follow over HTTP/2", func(t *testing.T) {
		// The client grants the stream 1 KiB and never reads it: the
		// server's next write waits for window that never comes.
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true,
			HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 1 << 10}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://"+n.node.APIAddr()+"/v1/admin/audit?follow=true&after=0", nil)
		req.Header.Set("Authorization", "Bearer "+c.admin)
		resp, err := tr.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			t.Fatalf("follow: %v %+v", err, resp)
		}
		defer resp.Body.Close()
		testwait.For(t, 10*writeTimeout, "the stalled follow to be cut off", func() bool { return streams("audit_follow") == 0 })
		b, err := io.ReadAll(resp.Body)
		if err == nil || len(b) > 1<<10 {
			t.Errorf("the stalled follow: %d bytes, then %v; want at most 1 KiB, then a reset stream", len(b), err)
		}
	})

	var full bytes.Buffer
	if _, err := n.node.FSM().WriteTo(&full); err != nil {
		t.Fatal(err)
	}
	t.Run("snapshot over HTTP/1.1", func(t *testing.T) {
		d := net.Dialer{Control: smallReceiveBuffer, Timeout: 5 * time.Second}
		tc, err := tls.DialWithDialer(&d, "tcp", n.node.APIAddr(), &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		fmt.Fprintf(tc, "GET /v1/admin/snapshot HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", n.node.APIAddr(), c.admin)
		testwait.For(t, 10*time.Second, "the snapshot download to start", func() bool { return streams("snapshot") == 1 })
		testwait.For(t, 10*writeTimeout, "the stalled download to be cut off", func() bool { return streams("snapshot") == 0 })
		// The connection is closed: what the kernel had buffered, then the end.
		tc.SetReadDeadline(time.Now().Add(30 * time.Second)) // a guard: a connection left open would hang here
		got, err := io.Copy(io.Discard, tc)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the connection was left open after %d bytes", got)
		}
		if got >= int64(full.Len()) {
			t.Errorf("the stalled client got %d bytes of a %d-byte state", got, full.Len())
		}
		t.Logf("stalled download cut off after %d of %d bytes", got, full.Len())
	})

	var snapshot []byte
	t.Run("slow reader", func(t *testing.T) {
		// Two write timeouts' worth of reading: a deadline on the whole
		// response would cut it off. (Not slower: the kernel wakes a
		// blocked writer only once about half its send buffer, up to a few
		// MiB, has drained, so one write may wait that long at the
		// client's rate.)
		bytesPerSecond := full.Len() / 2 / int(writeTimeout/time.Second)
		req, _ := http.NewRequest("GET", "https://"+n.node.APIAddr()+"/v1/admin/snapshot", nil)
		req.Header.Set("Authorization", "Bearer "+c.admin)
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: (&net.Dialer{Control: smallReceiveBuffer}).DialContext}}
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("snapshot: %v %+v", err, resp)
		}
		defer resp.Body.Close()
		lim := rate.NewLimiter(rate.Limit(bytesPerSecond), 16<<10)
		start := time.Now()
		var got bytes.Buffer
		buf := make([]byte, 16<<10)
		for {
			if err := lim.WaitN(context.Background(), len(buf)); err != nil {
				t.Fatal(err)
			}
			k, err := resp.Body.Read(buf)
			got.Write(buf[:k])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("slow reader cut off after %d bytes, %s: %v", got.Len(), time.Since(start), err)
			}
		}
		hdr, file, _ := bytes.Cut(got.Bytes(), []byte("\n"))
		var h struct{ Size int }
		if json.Unmarshal(hdr, &h) != nil || h.Size != len(file) || len(file) < full.Len()/2 {
			t.Errorf("slow reader got %d bytes after a header %s", len(file), hdr)
		}
		if d := time.Since(start); d < 2*writeTimeout {
			t.Errorf("the slow read took %s, not slower than the write timeout", d)
		}
		snapshot = got.Bytes()
	})

	t.Run("stalled upload", func(t *testing.T) {
		if len(snapshot) < 1<<20 {
			t.Fatal("the slow reader saved no snapshot to upload")
		}
		// The header and the first 64 KiB of a real snapshot, then nothing.
		tc, err := tls.Dial("tcp", n.node.APIAddr(), &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		fmt.Fprintf(tc, "POST /v1/admin/snapshot HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
			n.node.APIAddr(), c.admin, len(snapshot))
		tc.Write(snapshot[:64<<10])
		tc.SetReadDeadline(time.Now().Add(30 * time.Second)) // a guard: a server waiting for ever would hang here
		br := bufio.NewReader(tc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no reply to the stalled upload: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"timeout"`) {
			t.Errorf("stalled upload: %d %s", resp.StatusCode, body)
		}
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Errorf("the connection after the reply: %v, want it closed", err)
		}
		testwait.For(t, 10*time.Second, "the upload to end", func() bool { return streams("snapshot_restore") == 0 })
	})
}

// The Go client (and so the CLI) follows the cursors of paged lists, and
// its follow streams new entries only unless told where to start.
func TestClientPagesAndFollowsTheAuditLog(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.configure = func(cfg *Config) { cfg.Streams = api.StreamLimits{MaxFollowsPerAdmin: 1} }
	})
	n := c.nodes[0]
	for range 7 {
		c.mintToken(n, "1h", "x.example")
	}
	cl, err := client.New(client.Config{Addr: "https://" + n.node.APIAddr(), CAFile: c.pki.RootFile, AdminToken: c.admin})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []uint64
	err = cl.AuditAll(ctx, client.AuditQuery{Command: "token_create", Limit: 2}, func(e client.AuditEntry) error {
		got = append(got, e.Seq)
		return nil
	})
	if err != nil || len(got) != 7 {
		t.Fatalf("paged with the client: %v %v", got, err)
	}

	head, _ := n.node.FSM().AuditHead()
	followed := make(chan client.AuditEntry, 100)
	go cl.FollowAudit(ctx, client.AuditQuery{}, func(e client.AuditEntry) error { followed <- e; return nil })
	testwait.For(t, 10*time.Second, "the follow to start", func() bool {
		return c.metric(n, "quorumca_api_streams", map[string]string{"kind": "audit_follow"}) == 1
	})
	err = cl.FollowAudit(ctx, client.AuditQuery{}, func(client.AuditEntry) error { return nil })
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusTooManyRequests || ce.Code != "too_many_streams" || ce.RetryAfter == 0 {
		t.Errorf("a second follow of the admin: %v", err)
	}
	c.mintToken(n, "1h", "x.example")
	select {
	case e := <-followed:
		if e.Seq != head+1 || e.Command != "token_create" {
			t.Errorf("followed %+v, want entry %d, the first new one", e, head+1)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing followed")
	}
}

// Snapshot transfers hold a full copy of the state each: a node serves a
// bounded number at once, 429 beyond, and a slot comes back when one ends.
func TestSnapshotTransfersAreCapped(t *testing.T) {
	c := newTestClusterWith(t, 1, cluster.FastTiming(), func(c *testCluster) {
		c.configure = func(cfg *Config) { cfg.Streams = api.StreamLimits{MaxSnapshots: 1} }
	})
	n := c.nodes[0]
	r := c.do(n, "POST", "/v1/admin/tokens?format=text", map[string]any{"sans": []string{"dev-{n}.example"}, "count": 10000}, c.admin)
	if r.status != http.StatusCreated {
		t.Fatalf("mint: %d %s", r.status, r.body)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.pki.Root())
	download := func() *http.Response {
		req, _ := http.NewRequest("GET", "https://"+n.node.APIAddr()+"/v1/admin/snapshot", nil)
		req.Header.Set("Authorization", "Bearer "+c.admin)
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: (&net.Dialer{Control: smallReceiveBuffer}).DialContext}}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	held := download() // read nothing: the server waits on it
	if held.StatusCode != http.StatusOK {
		t.Fatalf("first download: %d", held.StatusCode)
	}
	second := download()
	body, _ := io.ReadAll(second.Body)
	second.Body.Close()
	if second.StatusCode != http.StatusTooManyRequests || second.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too_many_streams") {
		t.Fatalf("a second snapshot download while one is held: %d %s", second.StatusCode, body)
	}
	held.Body.Close()
	testwait.For(t, 40*time.Second, "the first download's slot to come back", func() bool {
		return c.metric(n, "quorumca_api_streams", map[string]string{"kind": "snapshot"}) == 0
	})
	third := download()
	io.Copy(io.Discard, third.Body)
	third.Body.Close()
	if third.StatusCode != http.StatusOK {
		t.Errorf("a download after the first ended: %d", third.StatusCode)
	}
}

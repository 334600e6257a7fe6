//go:build !agent

package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/internal/testwait"
	"golang.org/x/crypto/ocsp"
)

// statusAnswer is what a node said about a certificate's revocation: ok
// false when it declined to answer (503, OCSP tryLater).
type statusAnswer struct {
	what    string // "record", "ocsp" or "crl"
	ok      bool
	revoked bool
	detail  string
}

// A follower paused while a certificate is revoked, then resumed, never
// says the certificate is good: requests that reach it while it is paused,
// answered as it resumes, get the revocation or a 503, from its record,
// its OCSP responder and its CRL alike. (Before, it answered from its own
// stale state: "valid", a signed OCSP "good" for an hour, a CRL without
// the serial.)
func TestResumedFollowerNeverAnswersAStaleStatus(t *testing.T) {
	sc := startServerCluster(t)
	leader := sc.leader
	f := (leader + 1) % 3
	for round := range 3 {
		serial := issue(t, sc.c, sc.admin, sc.addr(leader), sc.addr(f), fmt.Sprintf("stale%d.example", round))
		leaf, issuer := certAndIssuer(t, sc, f, serial)
		ocspReq, err := ocsp.CreateRequest(leaf, issuer, nil)
		if err != nil {
			t.Fatal(err)
		}

		sc.procs[f].cmd.Process.Signal(syscall.SIGSTOP)
		var rev struct{ Serial string }
		if st := postJSON(t, sc.c, "https://"+sc.addr(leader)+"/v1/admin/certs/"+serial+"/revoke", sc.admin,
			map[string]string{"reason": "keyCompromise"}, &rev); st != 200 {
			sc.procs[f].cmd.Process.Signal(syscall.SIGCONT)
			t.Fatalf("revoke through the leader: %d", st)
		}
		testwait.For(t, 30*time.Second, "the leader's CRL to list the revocation", func() bool {
			a := askCRL(sc.c, sc.addr(leader), serial)
			return a.ok && a.revoked
		})
		for _, a := range whilePaused(sc, f,
			func(c *http.Client) statusAnswer { return askRecord(c, sc.addr(f), serial) },
			func(c *http.Client) statusAnswer { return askOCSP(c, sc.addr(f), ocspReq, issuer) },
			func(c *http.Client) statusAnswer { return askCRL(c, sc.addr(f), serial) },
		) {
			if a.ok && !a.revoked {
				t.Errorf("round %d: the resumed follower's %s says %s is not revoked: %s", round, a.what, serial, a.detail)
			}
			t.Logf("round %d: %s answered=%v revoked=%v %s", round, a.what, a.ok, a.revoked, a.detail)
		}
	}
}

// A leader paused long enough to be replaced, resumed, never answers from
// its state as it was: a revocation committed by the new leader is what
// it says, even where it had signed a "good" before.
func TestResumedOldLeaderNeverAnswersAStaleStatus(t *testing.T) {
	sc := startServerCluster(t)
	old := sc.leader
	serial := issue(t, sc.c, sc.admin, sc.addr(old), sc.addr(old), "oldleader.example")
	leaf, issuer := certAndIssuer(t, sc, old, serial)
	ocspReq, _ := ocsp.CreateRequest(leaf, issuer, nil)
	if a := askOCSP(sc.c, sc.addr(old), ocspReq, issuer); !a.ok || a.revoked {
		t.Fatalf("before: %+v", a) // and a signed good is kept
	}
	sc.procs[old].cmd.Process.Signal(syscall.SIGSTOP)
	var next int
	testwait.For(t, 30*time.Second, "a new leader", func() bool {
		var ok bool
		next, ok = sc.leaderOf((old+1)%3, (old+2)%3)
		return ok
	})
	var rev struct{ Serial string }
	if st := postJSON(t, sc.c, "https://"+sc.addr(next)+"/v1/admin/certs/"+serial+"/revoke", sc.admin,
		map[string]string{"reason": "keyCompromise"}, &rev); st != 200 {
		sc.procs[old].cmd.Process.Signal(syscall.SIGCONT)
		t.Fatalf("revoke through the new leader: %d", st)
	}
	getForm := "https://" + sc.addr(old) + "/v1/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(ocspReq))
	for _, a := range whilePaused(sc, old,
		func(c *http.Client) statusAnswer { return askRecord(c, sc.addr(old), serial) },
		func(c *http.Client) statusAnswer { return askOCSP(c, sc.addr(old), ocspReq, issuer) },
		func(c *http.Client) statusAnswer { return askOCSPResponse(c, "GET", getForm, nil, issuer) },
	) {
		if a.ok && !a.revoked {
			t.Errorf("the resumed old leader's %s says %s is not revoked: %s", a.what, serial, a.detail)
		}
		t.Logf("%s answered=%v revoked=%v %s", a.what, a.ok, a.revoked, a.detail)
	}
}

// An admin withdrawn while a follower is paused gets nothing from it once
// it resumes: no read, and no write through it. (Before, the follower
// trusted the credential as it knew it: 200s, and a token minted after
// the withdrawal, 201.)
func TestWithdrawnAdminIsRefusedByAResumedFollower(t *testing.T) {
	sc := startServerCluster(t)
	leader := sc.leader
	f := (leader + 1) % 3
	var created struct {
		Token string
		Admin struct{ ID string }
	}
	if st := postJSON(t, sc.c, "https://"+sc.addr(leader)+"/v1/admin/admins", sc.admin,
		map[string]any{"name": "leaving", "role": "admin"}, &created); st != 201 {
		t.Fatalf("create admin: %d", st)
	}
	testwait.For(t, 10*time.Second, "the follower to know the admin", func() bool {
		return adminCall(sc.c, "GET", "https://"+sc.addr(f)+"/v1/admin/whoami", created.Token, nil).ok
	})
	sc.procs[f].cmd.Process.Signal(syscall.SIGSTOP)
	req, _ := http.NewRequest("DELETE", "https://"+sc.addr(leader)+"/v1/admin/admins/"+created.Admin.ID, nil)
	req.Header.Set("Authorization", "Bearer "+sc.admin)
	resp, err := sc.c.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		sc.procs[f].cmd.Process.Signal(syscall.SIGCONT)
		t.Fatalf("withdraw the admin: %v %v", err, resp)
	}
	resp.Body.Close()
	at := "https://" + sc.addr(f)
	for _, a := range whilePaused(sc, f,
		func(c *http.Client) statusAnswer {
			return adminCall(c, "GET", at+"/v1/admin/whoami", created.Token, nil)
		},
		func(c *http.Client) statusAnswer {
			return adminCall(c, "POST", at+"/v1/admin/tokens", created.Token, []byte(`{"sans":["late.example"]}`))
		},
		func(c *http.Client) statusAnswer {
			return adminCall(c, "GET", at+"/v1/admin/certs?limit=1", created.Token, nil)
		},
	) {
		if a.ok {
			t.Errorf("the resumed follower accepted the withdrawn admin: %s", a.detail)
		}
		t.Logf("%s", a.detail)
	}
}

// whilePaused sends each ask to node i, which the caller has stopped
// (SIGSTOP), each on a connection of its own made before the node
// resumes; then it resumes the node and returns the answers.
func whilePaused(sc *serverCluster, i int, asks ...func(*http.Client) statusAnswer) []statusAnswer {
	answers := make(chan statusAnswer, len(asks))
	connected := make(chan struct{}, len(asks))
	c := pausedClient(sc, connected)
	for _, ask := range asks {
		go func() { answers <- ask(c) }()
	}
	for range asks {
		<-connected
	}
	sc.procs[i].cmd.Process.Signal(syscall.SIGCONT)
	out := make([]statusAnswer, 0, len(asks))
	for range asks {
		out = append(out, <-answers)
	}
	return out
}

// adminCall is an admin request: ok when it got a 2xx.
func adminCall(c *http.Client, method, url, bearer string, body []byte) statusAnswer {
	a := statusAnswer{what: method + " " + url}
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		a.detail = a.what + ": " + err.Error()
		return a
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a.ok = resp.StatusCode/100 == 2
	a.detail = fmt.Sprintf("%s: %d %s", a.what, resp.StatusCode, bytes.TrimSpace(b))
	return a
}

// pausedClient makes a new connection per request and reports each one
// made on connected.
func pausedClient(sc *serverCluster, connected chan<- struct{}) *http.Client {
	tr := sc.c.Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	d := &net.Dialer{}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		connected <- struct{}{}
		return conn, err
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

func certAndIssuer(t *testing.T, sc *serverCluster, i int, serial string) (leaf, issuer *x509.Certificate) {
	t.Helper()
	resp, err := sc.c.Get("https://" + sc.addr(i) + "/v1/certs/" + serial)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rec struct {
		Certificate string
		Chain       []string
	}
	if err := json.NewDecoder(resp.Body).Decode(&rec); err != nil || len(rec.Chain) == 0 {
		t.Fatalf("certificate %s: %v %+v", serial, err, rec)
	}
	parse := func(p string) *x509.Certificate {
		b, _ := pem.Decode([]byte(p))
		if b == nil {
			t.Fatalf("not PEM: %q", p)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return parse(rec.Certificate), parse(rec.Chain[0])
}

func askRecord(c *http.Client, addr, serial string) statusAnswer {
	a := statusAnswer{what: "record"}
	body, ok := a.fetch(c, "GET", "https://"+addr+"/v1/certs/"+serial, nil)
	var rec struct{ Status string }
	if ok && json.Unmarshal(body, &rec) == nil {
		a.ok, a.revoked = true, rec.Status == "revoked"
		a.detail += ": status " + rec.Status
	} else {
		a.detail += ": " + string(body)
	}
	return a
}

// fetch sends one request and reads the answer, noting its HTTP status in
// a.detail; ok for a 200.
func (a *statusAnswer) fetch(c *http.Client, method, url string, body []byte) ([]byte, bool) {
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if body != nil {
		req.Header.Set("Content-Type", "application/ocsp-request")
	}
	resp, err := c.Do(req)
	if err != nil {
		a.detail = err.Error()
		return nil, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a.detail = fmt.Sprintf("HTTP %d", resp.StatusCode)
	return b, resp.StatusCode == http.StatusOK
}

func askOCSP(c *http.Client, addr string, req []byte, issuer *x509.Certificate) statusAnswer {
	return askOCSPResponse(c, "POST", "https://"+addr+"/v1/ocsp", req, issuer)
}

// askOCSPResponse asks in the POST form (body req) or the GET form (req in url).
func askOCSPResponse(c *http.Client, method, url string, req []byte, issuer *x509.Certificate) statusAnswer {
	a := statusAnswer{what: "ocsp " + method}
	body, ok := a.fetch(c, method, url, req)
	if !ok {
		return a
	}
	r, err := ocsp.ParseResponse(body, issuer)
	if err != nil {
		a.detail += ": " + err.Error()
		return a
	}
	a.ok, a.revoked = true, r.Status == ocsp.Revoked
	a.detail += fmt.Sprintf(": status %d, next update %s", r.Status, r.NextUpdate.Format(time.RFC3339))
	return a
}

func askCRL(c *http.Client, addr, serial string) statusAnswer {
	a := statusAnswer{what: "crl"}
	body, ok := a.fetch(c, "GET", "https://"+addr+"/v1/crl", nil)
	if !ok {
		return a
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		a.detail += ": " + err.Error()
		return a
	}
	a.ok = true
	a.revoked = slices.ContainsFunc(crl.RevokedCertificateEntries, func(e x509.RevocationListEntry) bool {
		return fmt.Sprintf("%x", e.SerialNumber) == serial
	})
	a.detail += fmt.Sprintf(": CRL number %s, %d entries", crl.Number, len(crl.RevokedCertificateEntries))
	return a
}

// Dev nodes in processes of their own (dev -node): kill -9 of a follower
// does not turn the leader's log format down while it is gone, and the
// two that are left issue through either of them.
func TestLeaderKeepsItsLogFormatWhileAFollowerIsDead(t *testing.T) {
	dir := t.TempDir()
	base := freeBase(t, 3)
	listen := fmt.Sprintf("127.0.0.1:%d", base)
	var procs []*proc
	for i := range 3 { // node 1 first: it makes the PKI the others load
		p := start(t, "dev", "-data-dir", dir, "-listen", listen, "-nodes", "3", "-node", fmt.Sprint(i+1))
		testwait.For(t, 60*time.Second, fmt.Sprintf("node %d ready", i+1), func() bool { return strings.Contains(p.out.String(), "Press Ctrl-C") })
		procs = append(procs, p)
	}
	c := httpsClient(t, filepath.Join(dir, "root.pem"))
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", base+i) }
	var status struct {
		Leader    string `json:"leader"`
		LogFormat *int   `json:"log_format"`
	}
	leader := -1
	testwait.For(t, 30*time.Second, "a leader that writes the newest log format", func() bool {
		for i := range 3 {
			resp, err := c.Get("https://" + addr(i) + "/v1/health")
			if err != nil {
				continue
			}
			err = json.NewDecoder(resp.Body).Decode(&status)
			resp.Body.Close()
			if err == nil && status.Leader == fmt.Sprintf("node%d", i+1) && status.LogFormat != nil && *status.LogFormat == fsm.LogFormat {
				leader = i
				return true
			}
		}
		return false
	})
	dead, alive := (leader+1)%3, (leader+2)%3
	procs[dead].cmd.Process.Signal(syscall.SIGKILL)
	procs[dead].cmd.Wait()

	admin, _ := os.ReadFile(filepath.Join(dir, "admin.token"))
	// Longer than one round of the leader's format questions (format.go).
	for n, until := 0, time.Now().Add(5*time.Second); time.Now().Before(until); n++ {
		issue(t, c, strings.TrimSpace(string(admin)), addr(alive), addr(leader+n%2*(alive-leader)), fmt.Sprintf("d%d.example", n))
	}
	resp, err := c.Get("https://" + addr(leader) + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil || status.LogFormat == nil || *status.LogFormat != fsm.LogFormat {
		t.Fatalf("with a follower dead the leader writes log format %v (%v), want %d", status.LogFormat, err, fsm.LogFormat)
	}
}

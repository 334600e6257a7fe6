//go:build !agent

package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

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
		waitFor(t, 30*time.Second, "the leader's CRL to list the revocation", func() bool {
			a := askCRL(sc.c, sc.addr(leader), serial)
			return a.ok && a.revoked
		})

		// Each request on a connection of its own, connected (the kernel
		// accepts for the paused process) before the node resumes.
		answers := make(chan statusAnswer, 3)
		connected := make(chan struct{}, 3)
		c := pausedClient(sc, connected)
		go func() { answers <- askRecord(c, sc.addr(f), serial) }()
		go func() { answers <- askOCSP(c, sc.addr(f), ocspReq, issuer) }()
		go func() { answers <- askCRL(c, sc.addr(f), serial) }()
		for range 3 {
			<-connected
		}
		sc.procs[f].cmd.Process.Signal(syscall.SIGCONT)
		for range 3 {
			a := <-answers
			if a.ok && !a.revoked {
				t.Errorf("round %d: the resumed follower's %s says %s is not revoked: %s", round, a.what, serial, a.detail)
			}
			t.Logf("round %d: %s answered=%v revoked=%v %s", round, a.what, a.ok, a.revoked, a.detail)
		}
	}
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
	resp, err := c.Get("https://" + addr + "/v1/certs/" + serial)
	if err != nil {
		a.detail = err.Error()
		return a
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var rec struct{ Status string }
	a.detail = fmt.Sprintf("HTTP %d", resp.StatusCode)
	if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &rec) == nil {
		a.ok, a.revoked = true, rec.Status == "revoked"
		a.detail += ": status " + rec.Status
	} else {
		a.detail += ": " + string(body)
	}
	return a
}

func askOCSP(c *http.Client, addr string, req []byte, issuer *x509.Certificate) statusAnswer {
	a := statusAnswer{what: "ocsp"}
	resp, err := c.Post("https://"+addr+"/v1/ocsp", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		a.detail = err.Error()
		return a
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a.detail = fmt.Sprintf("HTTP %d", resp.StatusCode)
	if resp.StatusCode != http.StatusOK {
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
	resp, err := c.Get("https://" + addr + "/v1/crl")
	if err != nil {
		a.detail = err.Error()
		return a
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a.detail = fmt.Sprintf("HTTP %d", resp.StatusCode)
	if resp.StatusCode != http.StatusOK {
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

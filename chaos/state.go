package chaos

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/quorumca/quorumca/authority"
)

// nodeState is what one node reports through its API, read directly (not
// through HAProxy) after the faults are healed.
type nodeState struct {
	Name  string
	Err   string             // the state could not be read
	Certs map[string]logCert // the issued log, by serial
	Dups  []string           // serials the log lists more than once
	// CRL is the set of serials on the node's current CRL (signature
	// checked); nil with CRLErr when there is none.
	CRL    map[string]bool
	CRLErr string
	// OCSP is the node's answer (good, revoked, unknown, or error: ...)
	// for each serial asked about.
	OCSP map[string]string
}

type logCert struct {
	DER         []byte
	TokenID     string
	Requester   string // ACME: acme:<provisioner>/<account>
	Status      string
	RenewedFrom string
}

// reader reads nodes' state with the admin token.
type reader struct {
	admin  string
	http   *http.Client
	issuer *x509.Certificate
}

func newReader(roots *x509.CertPool, admin string, issuer *x509.Certificate) *reader {
	return &reader{admin: admin, issuer: issuer, http: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 8}}}
}

func (r *reader) get(ctx context.Context, url string, bearer bool, out any) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if bearer {
		req.Header.Set("Authorization", "Bearer "+r.admin)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		return data, json.Unmarshal(data, out)
	}
	return data, nil
}

// readState reads a node's whole issued log, its CRL, and its OCSP answer
// for each of the certificates in ask.
func (r *reader) readState(ctx context.Context, nd *cnode, ask map[string][]byte) *nodeState {
	st := &nodeState{Name: nd.name, Certs: map[string]logCert{}, OCSP: map[string]string{}}
	cursor := ""
	for {
		var page struct {
			Certs []struct {
				Serial      string            `json:"serial"`
				TokenID     string            `json:"token_id"`
				Requester   string            `json:"requester"`
				Status      string            `json:"status"`
				RenewedFrom string            `json:"renewed_from"`
				Certificate string            `json:"certificate"`
				Properties  map[string]string `json:"properties"`
			} `json:"certs"`
			Next string `json:"next_cursor"`
		}
		u := nd.api() + "/v1/admin/certs?limit=1000"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		if _, err := r.get(ctx, u, true, &page); err != nil {
			st.Err = err.Error()
			return st
		}
		for _, c := range page.Certs {
			blk, _ := pem.Decode([]byte(c.Certificate))
			if blk == nil {
				st.Err = "certificate " + c.Serial + " has no PEM"
				return st
			}
			serial := normSerial(c.Serial)
			if _, dup := st.Certs[serial]; dup {
				st.Dups = append(st.Dups, serial)
			}
			tokenID := c.TokenID
			if id := c.Properties["device_id"]; tokenID == "" && c.RenewedFrom == "" && id != "" {
				tokenID = "device:" + id // a factory device's enrollment: its entry is its token
			}
			st.Certs[serial] = logCert{DER: blk.Bytes, TokenID: tokenID, Requester: c.Requester, Status: c.Status, RenewedFrom: c.RenewedFrom}
		}
		if page.Next == "" || len(page.Certs) == 0 {
			break
		}
		cursor = page.Next
	}
	r.readCRL(ctx, nd, st)
	serials := make([]string, 0, len(ask))
	for s := range ask {
		serials = append(serials, s)
	}
	sort.Strings(serials)
	for _, s := range serials {
		st.OCSP[s] = r.ocsp(ctx, nd, ask[s])
	}
	return st
}

// crlsList reports whether every node's CRL lists every serial.
func (r *reader) crlsList(ctx context.Context, nodes []*cnode, serials []string) bool {
	for _, nd := range nodes {
		st := &nodeState{Name: nd.name}
		r.readCRL(ctx, nd, st)
		for _, s := range serials {
			if !st.CRL[s] {
				return false
			}
		}
	}
	return true
}

func (r *reader) readCRL(ctx context.Context, nd *cnode, st *nodeState) {
	der, err := r.get(ctx, nd.api()+"/v1/crl", false, nil)
	if err != nil {
		st.CRLErr = err.Error()
		return
	}
	crl, err := x509.ParseRevocationList(der)
	if err == nil {
		err = crl.CheckSignatureFrom(r.issuer)
	}
	if err != nil {
		st.CRLErr = "CRL: " + err.Error()
		return
	}
	st.CRL = map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		st.CRL[authority.SerialHex(e.SerialNumber)] = true
	}
}

// ocsp asks a node about one certificate and checks the answer's signature.
func (r *reader) ocsp(ctx context.Context, nd *cnode, der []byte) string {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "error: " + err.Error()
	}
	reqDER, err := ocsp.CreateRequest(cert, r.issuer, nil)
	if err != nil {
		return "error: " + err.Error()
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", nd.api()+"/v1/ocsp", bytes.NewReader(reqDER))
	req.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := r.http.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("error: %s %v", resp.Status, err)
	}
	o, err := ocsp.ParseResponseForCert(body, cert, r.issuer)
	if err != nil {
		return "error: " + err.Error()
	}
	switch o.Status {
	case ocsp.Good:
		return "good"
	case ocsp.Revoked:
		return "revoked"
	}
	return "unknown"
}

// readStates reads every node at once.
func (r *reader) readStates(ctx context.Context, nodes []*cnode, ask map[string][]byte) []*nodeState {
	out := make([]*nodeState, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = r.readState(ctx, nd, ask) }()
	}
	wg.Wait()
	return out
}

// normSerial is the canonical hex of a serial; unparseable input is kept.
func normSerial(s string) string {
	if n, err := authority.NormalizeSerial(s); err == nil {
		return n
	}
	return s
}

// probeSerials is how many of the newest acknowledged revocations a probe
// asks about.
const probeSerials = 5

// probeStatus asks nd, as it comes back from a fault, about revocations
// acknowledged before: its record and its OCSP answer for each, recorded
// in the history. A node not listening yet is asked again until it
// answers or 20 s pass; an answer of 503 is fine, good is not.
func (r *reader) probeStatus(ctx context.Context, hist *history, nd *cnode, revoked map[string][]byte) {
	serials := sortedKeys(revoked)
	serials = serials[max(0, len(serials)-probeSerials):]
	for _, s := range serials {
		for _, ask := range []func(context.Context, *cnode, string, []byte) (string, int, error){r.probeRecord, r.probeOCSP} {
			start := time.Now()
			op := Op{Kind: OpStatusProbe, Target: nd.name, Serial: s, Outcome: Unknown, Start: hist.since(start)}
			awaitCond(ctx, 20*time.Second, func() bool {
				code, status, err := ask(ctx, nd, s, revoked[s])
				if err != nil {
					op.Error = err.Error()
					return false // not listening yet
				}
				op.Outcome, op.Code, op.Status, op.Error = OK, code, status, ""
				return true
			})
			op.End = hist.since(time.Now())
			hist.add(op)
		}
	}
}

// probeRecord is the status of a node's record of serial: record:<status>,
// or record:unavailable with the HTTP status. err: no HTTP answer.
func (r *reader) probeRecord(ctx context.Context, nd *cnode, serial string, _ []byte) (string, int, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", nd.api()+"/v1/certs/"+serial, nil)
	resp, err := r.http.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var rec struct{ Status string }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&rec) != nil {
		return "record:unavailable", resp.StatusCode, nil
	}
	return "record:" + rec.Status, resp.StatusCode, nil
}

// probeOCSP is a node's OCSP answer for the certificate: ocsp:good,
// ocsp:revoked, ocsp:unknown, or ocsp:unavailable with the HTTP status.
func (r *reader) probeOCSP(ctx context.Context, nd *cnode, _ string, der []byte) (string, int, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "ocsp:bad_certificate", 0, nil
	}
	reqDER, err := ocsp.CreateRequest(cert, r.issuer, nil)
	if err != nil {
		return "ocsp:bad_request", 0, nil
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", nd.api()+"/v1/ocsp", bytes.NewReader(reqDER))
	req.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := r.http.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return "ocsp:unavailable", resp.StatusCode, nil
	}
	o, err := ocsp.ParseResponseForCert(body, cert, r.issuer)
	if err != nil {
		return "ocsp:unparsable", resp.StatusCode, nil
	}
	switch o.Status {
	case ocsp.Good:
		return "ocsp:good", resp.StatusCode, nil
	case ocsp.Revoked:
		return "ocsp:revoked", resp.StatusCode, nil
	}
	return "ocsp:unknown", resp.StatusCode, nil
}

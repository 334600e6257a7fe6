package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/internal/keyrate"
	"golang.org/x/crypto/ocsp"
)

const maxOCSPRequest = 10 << 10

// ocsp answers RFC 6960 requests: POST with a DER body, or GET with the
// base64 request in the path. Anyone may ask, without TLS, so each source
// address has a budget (OCSPLimit). Every answer is an OCSP response,
// refusals too, since OCSP clients read nothing else: malformedRequest
// for what is not a request we answer (400, or 413 for a body too large),
// tryLater for a request turned away or one that cannot be answered right
// now (429 over budget, 503 signer or cluster unavailable, with
// Retry-After), internalError otherwise (500). A refusal is never a 200,
// so a cache in front of the GET form never keeps it in place of the real
// answer (Boulder and CFSSL do the same; openssl reports the status).
// "unauthorized" (a certificate not issued here) is an answer: 200, as in
// RFC 5019. Every OCSP body sent is counted once by status
// (quorumca_ocsp_responses_total): good, revoked or unknown per
// certificate a signed answer reports, else the error response's status.
func (s *Server) ocsp(w http.ResponseWriter, r *http.Request) {
	if s.OCSPLimit != nil {
		key := keyrate.Source(remoteAddr(r))
		if !s.OCSPLimit.Allow(key) {
			secs := math.Ceil(s.OCSPLimit.Delay(key).Seconds())
			setOutcome(r, "rate_limited")
			s.ops.ocsp.WithLabelValues("tryLater").Inc()
			s.ocspTryLater(w, http.StatusTooManyRequests, strconv.Itoa(max(int(secs), 1)))
			return
		}
	}
	der, err := readOCSPRequest(w, r)
	var resp []byte
	var statuses []string
	if err == nil {
		resp, statuses, err = s.CA.OCSP(r.Context(), der)
	}
	if err != nil {
		s.ocspFail(w, r, err)
		return
	}
	if len(statuses) == 0 && bytes.Equal(resp, ocsp.UnauthorizedErrorResponse) {
		setOutcome(r, "unauthorized") // not issued here: seen in metrics, not logged one by one
		s.ops.ocsp.WithLabelValues("unauthorized").Inc()
	}
	for _, st := range statuses {
		s.ops.ocsp.WithLabelValues(st).Inc()
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	info, signed := authority.ReadOCSPResponse(resp)
	switch {
	case signed && info.Nonce != nil:
		// Made for this request alone (RFC 8954): no cache may serve it
		// to another.
		w.Header().Set("Cache-Control", "no-store")
	case signed && r.Method != http.MethodPost:
		// RFC 5019 6.2: fresh until nextUpdate, never beyond; the ETag
		// and Last-Modified let a cache revalidate (ServeContent answers
		// If-None-Match and If-Modified-Since with 304).
		sum := sha256.Sum256(resp)
		age := max(int(time.Until(info.NextUpdate)/time.Second), 0)
		w.Header().Set("Cache-Control", "max-age="+strconv.Itoa(age)+", public, no-transform, must-revalidate")
		w.Header().Set("Expires", info.NextUpdate.UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
		http.ServeContent(w, r, "", info.ThisUpdate, bytes.NewReader(resp))
		return
	}
	w.Write(resp)
}

// readOCSPRequest returns the DER request of a POST body or a GET path.
func readOCSPRequest(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Method == http.MethodPost {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOCSPRequest))
		if err != nil {
			return nil, bodyError(err)
		}
		return b, nil
	}
	raw := r.PathValue("req")
	// Clients URL-encode the base64; some leave '+' and '/' raw.
	if u, err := url.PathUnescape(raw); err == nil {
		raw = u
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(raw))
	if err != nil || len(b) > maxOCSPRequest {
		return nil, badRequest("OCSP GET request is not base64 DER")
	}
	return b, nil
}

// ocspFail answers err with the OCSP error response for the status it
// maps to, counts it, and reports the refusal.
func (s *Server) ocspFail(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := s.classify(r, err)
	if s.Refused != nil {
		s.Refused(r, status, code, msg)
	}
	setOutcome(r, code)
	body, counted := ocsp.MalformedRequestErrorResponse, "malformed"
	switch {
	case status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests:
		s.ops.ocsp.WithLabelValues("tryLater").Inc()
		s.ocspTryLater(w, status, "1")
		return
	case status >= 500:
		body, counted = ocsp.InternalErrorErrorResponse, "internalError"
	}
	s.ops.ocsp.WithLabelValues(counted).Inc()
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.WriteHeader(status)
	w.Write(body)
}

func (s *Server) ocspTryLater(w http.ResponseWriter, status int, retryAfter string) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", retryAfter)
	w.WriteHeader(status)
	w.Write(ocsp.TryLaterErrorResponse)
}

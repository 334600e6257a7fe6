package api

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/internal/keyrate"
	"golang.org/x/crypto/ocsp"
)

const maxOCSPRequest = 10 << 10

// ocsp answers RFC 6960 requests: POST with a DER body, or GET with the
// base64 request in the path. Anyone may ask, without TLS, so each source
// address has a budget (OCSPLimit). A request turned away, or one that
// cannot be answered right now, gets the OCSP "tryLater" response: OCSP
// clients read an OCSP body, not JSON. It comes with the HTTP status that
// says why (429 over budget, 503 signer or cluster unavailable) and
// Retry-After, never 200: a cache in front of the GET form must not keep
// it in place of the real answer. Bytes that are not an OCSP request get
// a JSON 4xx like any other endpoint. An OCSP request that asks about no
// certificate or more than authority.MaxOCSPCertificates comes from an
// OCSP client, which reads an OCSP body: it gets malformedRequest, with
// 400 as the JSON refusal would have (Boulder and CFSSL do the same), not
// 200: a refusal is never a 200 here. openssl then reports the 400.
// Every OCSP body sent is counted by status (quorumca_ocsp_responses_total);
// a JSON refusal is no OCSP response and shows in the operations counter.
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
	var der []byte
	if r.Method == http.MethodPost {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOCSPRequest))
		if err != nil {
			s.fail(w, r, bodyError(err))
			return
		}
		der = b
	} else {
		raw := r.PathValue("req")
		// Clients URL-encode the base64; some leave '+' and '/' raw.
		if u, err := url.PathUnescape(raw); err == nil {
			raw = u
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(raw))
		if err != nil || len(b) > maxOCSPRequest {
			s.fail(w, r, badRequest("OCSP GET request is not base64 DER"))
			return
		}
		der = b
	}
	resp, statuses, err := s.CA.OCSP(r.Context(), der)
	if err != nil {
		status, code, msg := s.classify(r, err)
		malformed := errors.Is(err, authority.ErrOCSPMalformed)
		if !malformed && status != http.StatusServiceUnavailable && status != http.StatusTooManyRequests {
			s.fail(w, r, err)
			return
		}
		if s.Refused != nil {
			s.Refused(r, status, code, msg)
		}
		setOutcome(r, code)
		if malformed {
			s.ops.ocsp.WithLabelValues("malformed").Inc()
			w.Header().Set("Content-Type", "application/ocsp-response")
			w.WriteHeader(status)
			w.Write(ocsp.MalformedRequestErrorResponse)
			return
		}
		s.ops.ocsp.WithLabelValues("tryLater").Inc()
		s.ocspTryLater(w, status, "1")
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
	w.Write(resp)
}

func (s *Server) ocspTryLater(w http.ResponseWriter, status int, retryAfter string) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", retryAfter)
	w.WriteHeader(status)
	w.Write(ocsp.TryLaterErrorResponse)
}

package api

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
)

const maxOCSPRequest = 10 << 10

// ocsp answers RFC 6960 requests: POST with a DER body, or GET with the
// base64 request in the path.
func (s *Server) ocsp(w http.ResponseWriter, r *http.Request) {
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
	resp, err := s.CA.OCSP(r.Context(), der)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(resp)
}

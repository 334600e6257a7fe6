// Package api speaks HTTP: it decodes requests, calls the authority, and
// encodes replies. Status codes live here and nowhere else (errors.go).
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumca/quorumca/acme"
	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/internal/errs"
	"github.com/quorumca/quorumca/internal/keyrate"
)

// Server holds the API's dependencies.
type Server struct {
	CA       CA
	Cluster  Cluster
	Internal http.Handler // node-to-node RPC, mounted at /v1/internal/
	Operator Operator
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// Refused, if set, hears of every request answered with an error: the
	// node logs it (refusals never reach the replicated audit log).
	Refused func(r *http.Request, status int, code, message string)
	// PublicURLs are the base URLs clients reach this API at
	// (https://host[:port]), from the configuration: a self-minted token's
	// aud names one of them plus the path it is sent to. Never the request's
	// Host header, which the client chooses.
	PublicURLs []string
	// OCSPLimit, if set, bounds OCSP requests per source address.
	OCSPLimit *keyrate.Limiter
	// Streams bounds audit follows and each write of a long response.
	Streams StreamLimits
	// CRLMaxAge is how long a CRL may be cached (Cache-Control): the CRL
	// interval, within which a revocation reaches the CRL.
	CRLMaxAge time.Duration
	// MetricsToken, if set, is the bearer token /v1/metrics requires.
	MetricsToken string
	// APICertProblem, if set, says why the API certificate this node
	// serves would fail its clients ("" when it would not): /v1/ready
	// answers no_api_certificate while it says so.
	APICertProblem func() string
	// ACME, if set, serves ACME directories under /acme/ (acme.go).
	ACME *acme.Service

	signAud, renewAud []string

	duration *prometheus.HistogramVec
	ops      *opMetrics
	streams  *streams
	chains   chainCache // the JSON of chains answered
}

// Request body limits. A CSR with many names and an RSA-8192 key fits in
// 64 KiB with room to spare.
const (
	maxSignBody  = 64 << 10
	maxAdminBody = 64 << 10
)

// Routes returns the handler for every endpoint.
func (s *Server) Routes() http.Handler {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	s.Logger = s.Logger.With("component", "api")
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "quorumca_http_request_duration_seconds",
		Help:    "Time to serve API requests, by route and status code.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"route", "code"})
	// A nil *Registry passed as a Registerer would not be a nil interface.
	var reg prometheus.Registerer
	if s.Registry != nil {
		reg = s.Registry
		reg.MustRegister(s.duration)
	}
	s.ops = newOpMetrics(reg)
	s.signAud, s.renewAud = audiences(s.PublicURLs, "/v1/sign"), audiences(s.PublicURLs, "/v1/renew")
	s.streams = newStreams(s.Streams, reg)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/sign", s.sign)
	mux.HandleFunc("POST /v1/renew", s.renew)
	mux.HandleFunc("POST /v1/revoke", s.revoke)
	mux.HandleFunc("GET /v1/admin/whoami", s.whoami)
	mux.HandleFunc("POST /v1/admin/tokens", s.createToken)
	mux.HandleFunc("GET /v1/admin/tokens", s.listTokens)
	mux.HandleFunc("DELETE /v1/admin/tokens/{id}", s.revokeToken)
	mux.HandleFunc("POST /v1/admin/acme/eab", s.createEAB)
	mux.HandleFunc("DELETE /v1/admin/acme/eab/{id}", s.revokeEAB)
	mux.HandleFunc("GET /v1/admin/provisioners", s.listProvisioners)
	mux.HandleFunc("POST /v1/admin/provisioners", s.createProvisioner)
	mux.HandleFunc("GET /v1/admin/provisioners/{name}", s.getProvisioner)
	mux.HandleFunc("PUT /v1/admin/provisioners/{name}", s.updateProvisioner)
	mux.HandleFunc("DELETE /v1/admin/provisioners/{name}", s.deleteProvisioner)
	mux.HandleFunc("GET /v1/admin/provisioners/{name}/devices", s.listDevices)
	mux.HandleFunc("POST /v1/admin/provisioners/{name}/devices", s.putDevices)
	mux.HandleFunc("GET /v1/admin/provisioners/{name}/devices/{id}", s.getDevice)
	mux.HandleFunc("POST /v1/admin/provisioners/{name}/devices/{id}/revoke", s.revokeDevice)
	mux.HandleFunc("GET /v1/admin/certs", s.searchCerts)
	mux.HandleFunc("POST /v1/admin/certs/{serial}/revoke", s.adminRevoke)
	mux.HandleFunc("GET /v1/admin/admins", s.listAdmins)
	mux.HandleFunc("POST /v1/admin/admins", s.createAdmin)
	mux.HandleFunc("DELETE /v1/admin/admins/{id}", s.revokeAdmin)
	mux.HandleFunc("GET /v1/admin/audit", s.audit)
	mux.HandleFunc("GET /v1/admin/raft/peers", s.listPeers)
	mux.HandleFunc("DELETE /v1/admin/raft/peers/{id}", s.removePeer)
	mux.HandleFunc("POST /v1/admin/raft/transfer-leadership", s.transferLeadership)
	mux.HandleFunc("GET /v1/admin/snapshot", s.saveSnapshot)
	mux.HandleFunc("POST /v1/admin/snapshot", s.restoreSnapshot)
	mux.HandleFunc("GET /v1/admin/authorities", s.listAuthorities)
	mux.HandleFunc("POST /v1/admin/authorities", s.createAuthority)
	mux.HandleFunc("POST /v1/admin/authorities/csr", s.authorityCSR)
	mux.HandleFunc("POST /v1/admin/authorities/import", s.importAuthority)
	mux.HandleFunc("GET /v1/admin/authorities/{name}", s.getAuthority)
	mux.HandleFunc("POST /v1/admin/authorities/{name}/rotate", s.rotateAuthority)
	mux.HandleFunc("PATCH /v1/admin/authorities/{name}", s.updateAuthority)
	mux.HandleFunc("POST /v1/admin/authorities/{name}/issuers/{issuer}/revoke", s.revokeIssuer)
	mux.HandleFunc("GET /v1/admin/authorities/{name}/root-crl-request", s.rootCRLRequest)
	mux.HandleFunc("POST /v1/admin/authorities/{name}/root-crl", s.importRootCRL)
	for path, role := range delegateRoles {
		mux.HandleFunc("GET /v1/admin/authorities/{name}/"+path, s.getDelegate(role))
		mux.HandleFunc("PUT /v1/admin/authorities/{name}/"+path, s.setDelegate(role))
		mux.HandleFunc("DELETE /v1/admin/authorities/{name}/"+path, s.deleteDelegate(role))
	}
	mux.HandleFunc("GET /v1/certs/{serial}", s.getCert)
	mux.HandleFunc("GET /v1/certs/{serial}/renewal-info", s.renewalInfo)
	s.estRoutes(mux)
	s.scepRoutes(mux)
	mux.HandleFunc("GET /v1/roots", s.roots)
	mux.HandleFunc("GET /v1/authorities/{name}/roots", s.authorityRoots)
	s.revocationRoutes(mux)
	s.acmeRoutes(mux)
	mux.HandleFunc("GET /v1/health", s.health)
	mux.HandleFunc("GET /v1/ready", s.ready)
	if s.Internal != nil {
		mux.Handle("/v1/internal/", s.Internal)
	}
	if s.Registry != nil {
		metrics := MetricsHandler(s.Registry, s.MetricsToken, s.Refused)
		mux.Handle("GET /v1/metrics", metrics)
		mux.Handle("GET /metrics", metrics)
	}
	return s.middleware(mux)
}

// revocationRoutes are served on the API and on the plain-HTTP listener:
// a client checking revocation should not need TLS to do it (RFC 5280).
func (s *Server) revocationRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/crl", s.crl)
	mux.HandleFunc("GET /v1/authorities/{name}/crl", s.crl)
	mux.HandleFunc("GET /v1/authorities/{name}/issuer.crt", s.issuerCert)
	mux.HandleFunc("GET /v1/authorities/{name}/issuers/{issuer}/crl", s.crl)
	mux.HandleFunc("GET /v1/authorities/{name}/issuers/{issuer}/crl/{shard}", s.crl)
	mux.HandleFunc("GET /v1/authorities/{name}/issuers/{issuer}/issuer.crt", s.issuerCert)
	mux.HandleFunc("GET /v1/authorities/{name}/roots/{root}/crl", s.rootCRL)
	mux.HandleFunc("GET /v1/authorities/{name}/roots/{root}/root.crt", s.rootCert)
	mux.HandleFunc("GET /v1/authorities/{name}/crls.pem", s.crlBundle)
	mux.HandleFunc("GET /v1/ocsp/{req...}", s.ocsp)
	mux.HandleFunc("POST /v1/ocsp", s.ocsp)
}

// PublicRoutes is the plain-HTTP handler: CRLs, OCSP, issuer certificates.
func (s *Server) PublicRoutes() http.Handler {
	mux := http.NewServeMux()
	s.revocationRoutes(mux)
	return s.middleware(mux)
}

// middleware adds panic recovery, JSON errors for unrouted requests, and
// per-route timing.
func (s *Server) middleware(mux *http.ServeMux) http.Handler {
	probe, _ := http.NewRequest(http.MethodGet, "/v1/ocsp/x", nil)
	_, ocspGET := mux.Handler(probe)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		ctx, outcome := withOutcome(authority.WithOrigin(r.Context(), "", remoteAddr(r)))
		r = r.WithContext(ctx)
		// Handler finds the route; ServeHTTP (not the returned handler)
		// is what sets path values.
		var h http.Handler = mux
		_, route := mux.Handler(r)
		if ocspGET != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.HasPrefix(r.URL.Path, "/v1/ocsp/") {
			// An OCSP GET's path is base64, which clients may leave raw:
			// a "//" in it is data, which the mux would clean away (a
			// redirect to another request).
			r.SetPathValue("req", strings.TrimPrefix(r.URL.EscapedPath(), "/v1/ocsp/"))
			h, route = http.HandlerFunc(s.ocsp), ocspGET
		}
		if route == "" {
			route = "unrouted"
			h, _ = mux.Handler(r)
			h = jsonUnrouted(h)
		}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.Error("panic serving request", "route", route, "panic", v)
				if !sw.wrote {
					writeError(sw, http.StatusInternalServerError, "internal", "internal error")
				}
			}
			d := time.Since(start)
			s.duration.WithLabelValues(route, fmt.Sprint(sw.code)).Observe(d.Seconds())
			if *outcome == "" {
				*outcome = "ok"
			}
			s.ops.observe(route, *outcome, d)
		}()
		h.ServeHTTP(sw, r)
	})
}

// jsonUnrouted turns the mux's plain-text 404 and 405 into JSON errors.
func jsonUnrouted(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &captureWriter{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		if rec.code == http.StatusMethodNotAllowed {
			writeError(w, rec.code, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path)
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
	})
}

type captureWriter struct {
	header http.Header
	code   int
}

func (c *captureWriter) Header() http.Header         { return c.header }
func (c *captureWriter) Write(b []byte) (int, error) { return len(b), nil }
func (c *captureWriter) WriteHeader(code int)        { c.code = code }

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// decode reads a JSON body of at most limit bytes into v. Unknown fields are
// refused so a misspelt field is an error, not a silent default.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("unexpected data after the JSON body")
	}
	return nil
}

func bodyError(err error) error {
	var maxErr *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &maxErr):
		return refusal(errs.TooLarge, "too_large", fmt.Sprintf("request body exceeds %d bytes", maxErr.Limit))
	case errors.As(err, &typeErr):
		return badRequest(fmt.Sprintf("field %q: expected %s", typeErr.Field, typeErr.Type))
	case errors.As(err, &syntaxErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body is not valid JSON")
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return badRequest("unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return badRequest("invalid request body")
}

func badRequest(msg string) error {
	return refusal(errs.Invalid, "bad_request", msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// ctxAlive is for handlers: a request whose client went away is not an error
// worth logging.
func ctxAlive(ctx context.Context) bool { return ctx.Err() == nil }

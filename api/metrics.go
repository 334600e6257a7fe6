package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/quorumca/quorumca/authority"
)

// Operation metrics: what clients asked for and how it ended, by the error
// code that refused it ("ok" when it did not). Token outcomes are the
// outcomes of "issue".

var operations = map[string]string{
	"POST /v1/sign":                        "issue",
	"POST /v1/renew":                       "renew",
	"POST /v1/revoke":                      "revoke",
	"POST /v1/admin/certs/{serial}/revoke": "revoke",
	"POST /v1/admin/tokens":                "token_mint",
	"DELETE /v1/admin/tokens/{id}":         "token_revoke",
	"GET /v1/ocsp/{req...}":                "ocsp",
	"POST /v1/ocsp":                        "ocsp",
}

type opMetrics struct {
	count    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	ocsp     *prometheus.CounterVec
}

// OCSP response statuses as relying parties see them: a certificate's
// status in a signed response, or the response's error status.
var ocspStatuses = []string{authority.OCSPGood, authority.OCSPRevoked, authority.OCSPUnknown, "unauthorized", "malformed", "tryLater", "internalError"}

func newOpMetrics(reg prometheus.Registerer) *opMetrics {
	m := &opMetrics{
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quorumca_operations_total",
			Help: "Certificate operations by outcome: ok, or the code of the rule that refused them.",
		}, []string{"operation", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "quorumca_operation_duration_seconds",
			Help:    "Time to serve certificate operations, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"operation", "outcome"}),
		ocsp: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quorumca_ocsp_responses_total",
			Help: "OCSP responses by status: good, revoked or unknown once per certificate a signed response answers; unauthorized, malformed, tryLater or internalError once per unsigned response.",
		}, []string{"status"}),
	}
	// Every status from zero, so a rate is defined before the first one.
	for _, st := range ocspStatuses {
		m.ocsp.WithLabelValues(st)
	}
	if reg != nil {
		reg.MustRegister(m.count, m.duration, m.ocsp)
	}
	return m
}

func (m *opMetrics) observe(route string, outcome string, d time.Duration) {
	op, ok := operations[route]
	if !ok {
		return
	}
	m.count.WithLabelValues(op, outcome).Inc()
	m.duration.WithLabelValues(op, outcome).Observe(d.Seconds())
}

// outcomeKey carries, through a request's context, the code of the error
// the request was answered with.
type outcomeKey struct{}

func withOutcome(ctx context.Context) (context.Context, *string) {
	s := new(string)
	return context.WithValue(ctx, outcomeKey{}, s), s
}

func setOutcome(r *http.Request, code string) {
	if p, ok := r.Context().Value(outcomeKey{}).(*string); ok {
		*p = code
	}
}

// MetricsHandler serves reg in the Prometheus format. With a token, a
// request without "Authorization: Bearer <token>" gets 401 and refused,
// if set, hears of it (by path and code: the header is never logged).
func MetricsHandler(reg prometheus.Gatherer, token string, refused func(r *http.Request, status int, code, message string)) http.Handler {
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if token == "" {
		return h
	}
	// Digests compared, so the time taken says nothing of the token's
	// length (ConstantTimeCompare returns at once when lengths differ).
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(bearer(r)))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			const msg = "metrics need Authorization: Bearer <the metrics token>"
			if refused != nil {
				refused(r, http.StatusUnauthorized, "unauthorized", msg)
			}
			setOutcome(r, "unauthorized")
			w.Header().Set("WWW-Authenticate", `Bearer realm="quorumca metrics"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", msg)
			return
		}
		h.ServeHTTP(w, r)
	})
}

package node

import (
	"crypto/x509"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
)

// expiryCollector reports, at each scrape and by this node's clock, how
// long the authorities' CA certificates and their stored CRLs have left:
// what relying parties fail on when it runs out. Read from the replicated
// state at scrape time, so nothing needs updating when it changes. A root
// is labelled issuer="root-<issuer ID of the root>", the ID its CRL is
// stored under, so a root's certificate and CRL series share labels.
type expiryCollector struct {
	state *fsm.FSM
	now   func() time.Time

	certExpiry, crlNextUpdate, crlNumber *prometheus.Desc
}

func newExpiryCollector(state *fsm.FSM, now func() time.Time) *expiryCollector {
	labels := []string{"authority", "issuer"}
	return &expiryCollector{state: state, now: now,
		certExpiry: prometheus.NewDesc("quorumca_ca_cert_expiry_seconds",
			"Seconds until an authority's issuer or root certificate (issuer=\"root-<id>\") expires; negative once expired.", labels, nil),
		crlNextUpdate: prometheus.NewDesc("quorumca_crl_next_update_seconds",
			"Seconds until a stored CRL's nextUpdate; negative once passed.", labels, nil),
		crlNumber: prometheus.NewDesc("quorumca_crl_number",
			"CRL number of the stored CRL.", labels, nil),
	}
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.certExpiry
	ch <- c.crlNextUpdate
	ch <- c.crlNumber
}

// Collect leaves out what it cannot read (a closing state, a certificate
// that does not parse) rather than fail the whole scrape.
func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	if as, err := c.state.Authorities(); err == nil {
		for _, a := range as {
			// Keyed by label: two certificates of one key (a root
			// re-certified) have one ID, and a repeated series would fail
			// the scrape. The later expiry counts: the key is trusted
			// while either is.
			expiry := map[string]time.Time{}
			add := func(id string, der []byte) {
				cert, err := x509.ParseCertificate(der)
				if err != nil {
					return
				}
				if id == "" {
					id = "root-" + authority.IssuerID(cert)
				}
				if cert.NotAfter.After(expiry[id]) {
					expiry[id] = cert.NotAfter
				}
			}
			for _, iss := range a.Issuers {
				if len(iss.Chain) > 0 {
					add(iss.ID, iss.Chain[0])
				}
			}
			for _, root := range a.Roots() {
				add("", root)
			}
			for id, t := range expiry {
				ch <- prometheus.MustNewConstMetric(c.certExpiry, prometheus.GaugeValue, t.Sub(now).Seconds(), a.Name, id)
			}
		}
	}
	if crls, err := c.state.CRLSummaries(); err == nil {
		for _, crl := range crls {
			ch <- prometheus.MustNewConstMetric(c.crlNextUpdate, prometheus.GaugeValue, crl.NextUpdate.Sub(now).Seconds(), crl.Authority, crl.Issuer)
			ch <- prometheus.MustNewConstMetric(c.crlNumber, prometheus.GaugeValue, float64(crl.Number), crl.Authority, crl.Issuer)
		}
	}
}

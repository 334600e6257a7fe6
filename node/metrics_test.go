package node

import (
	"bytes"
	"math"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/quorumca/quorumca/authority"
)

// scrape reads tn's /v1/metrics on the API, with token if not "".
func (c *testCluster) scrape(tn *testNode, token string) map[string]*dto.MetricFamily {
	c.t.Helper()
	r := c.do(tn, "GET", "/v1/metrics", nil, token)
	if r.status != http.StatusOK {
		c.t.Fatalf("metrics: %d %s", r.status, r.body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		c.t.Fatalf("metrics do not parse as Prometheus text: %v", err)
	}
	return families
}

// The issuer's and the root's certificates and the stored CRL report the
// seconds they have left by the node's clock, and the CRL its number.
func TestMetricsCertAndCRLLifetimes(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[0]
	h := c.enrollHolder(n, "life.example")
	c.do(n, "POST", "/v1/revoke", map[string]string{"serial": h.s.Serial}, c.admin)
	crl := c.crlListing(n, h.chain[0], h.cert.SerialNumber)
	issuer, root := h.chain[0], c.pki.Root()
	near := func(got, want float64) bool { return math.Abs(got-want) < 60 }

	// An hour on: well before the leader re-signs the CRL (at half its life).
	for _, advance := range []time.Duration{0, time.Hour} {
		c.clock.Advance(advance)
		now := c.clock.Now()
		m := c.scrape(n, "")
		for _, tt := range []struct {
			name, issuer string
			want         float64
		}{
			{"quorumca_ca_cert_expiry_seconds", authority.IssuerID(issuer), issuer.NotAfter.Sub(now).Seconds()},
			{"quorumca_ca_cert_expiry_seconds", "root-" + authority.IssuerID(root), root.NotAfter.Sub(now).Seconds()},
			{"quorumca_crl_next_update_seconds", authority.IssuerID(issuer), crl.NextUpdate.Sub(now).Seconds()},
		} {
			labels := map[string]string{"authority": "default", "issuer": tt.issuer}
			if got := metricValue(t, m, tt.name, labels); !near(got, tt.want) {
				t.Errorf("after %s: %s%v = %v, want about %v", advance, tt.name, labels, got, tt.want)
			}
		}
		labels := map[string]string{"authority": "default", "issuer": authority.IssuerID(issuer)}
		if got := metricValue(t, m, "quorumca_crl_number", labels); got != float64(crl.Number.Int64()) {
			t.Errorf("quorumca_crl_number = %v, want %v", got, crl.Number)
		}
	}
}

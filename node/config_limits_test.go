package node

import (
	"strings"
	"testing"
	"time"
)

const bootstrapCluster = `cluster {
  bootstrap = true
  join_secret = "0123456789abcdef"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}
authority "default" {
  root_file = "r"
  chain_file = "c"
  key = "awskms:alias/k"
}
`

func TestCRLIntervalLineageLimitsAndRevokeOnRenew(t *testing.T) {
	c, err := Parse("n.hcl", []byte(baseConfig+bootstrapCluster+`
crl { interval = "3s" }
lineage_limits {
  renewals_per_minute = 2
  renewal_burst = 4
  holder_revocations_per_minute = 1.5
  holder_revocation_burst = 3
}
provisioner "p" {
  kind = "enrollment-token"
  authority = "default"
  revoke_on_renew = true
}`))
	if err != nil {
		t.Fatal(err)
	}
	l := c.LineageLimits
	if c.CRLInterval != 3*time.Second || l.RenewalsPerMinute != 2 || l.RenewalBurst != 4 || l.HolderRevocationsPerMinute != 1.5 || l.HolderRevocationBurst != 3 {
		t.Errorf("parsed interval %v, limits %+v", c.CRLInterval, l)
	}
	if !c.Provisioners[0].Policy.RevokeOnRenew {
		t.Error("revoke_on_renew not read")
	}
	for src, want := range map[string]string{
		`crl { interval = "2h" }`:                     "between 0",
		`crl { interval = "soon" }`:                   "crl: interval",
		`lineage_limits { renewal_burst = -1 }`:       "must not be negative",
		`lineage_limits { renewals_per_minute = -2 }`: "must not be negative",
	} {
		if _, err := Parse("n.hcl", []byte(baseConfig+bootstrapCluster+src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", src, err, want)
		}
	}
}

package node

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quorumca/quorumca/fsm"
)

func TestDeployExampleConfigIsValid(t *testing.T) {
	c, err := Load("../deploy/node.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "ca-1" || c.BootstrapExpect != 3 || len(c.RetryJoin) != 3 || c.GossipKeyFile == "" || len(c.Authorities) != 1 ||
		c.APIAdvertise != "ca-1.internal.example:8443" || c.JoinSecretFile == "" || c.HTTPListen == "" ||
		c.Authorities[0].BaseURL == "" || c.ServerStabilization.Seconds() != 10 || c.DeadServerCleanup.Minutes() != 10 {
		t.Errorf("parsed %+v", c)
	}
	if c.Signer.Rate != 100 || c.Signer.Timeout.Seconds() != 5 || c.AllowInsecureSoftSigner ||
		!strings.HasPrefix(c.Authorities[0].Key, "awskms:") {
		t.Errorf("signer settings %+v", c.Signer)
	}
	if len(c.APIPublicURLs) != 2 || c.APIPublicURLs[0] != "https://ca.internal.example" {
		t.Errorf("public URLs %v", c.APIPublicURLs)
	}
	if len(c.Provisioners) != 4 || c.Provisioners[0].Policy.RenewGrace.Hours() != 72 || c.Provisioners[3].JWKFile == "" ||
		c.Provisioners[1].Kind != fsm.KindServer || c.Provisioners[1].Policy.EKU != "server" || c.TLSProvisioner != "servers" {
		t.Errorf("provisioners %+v", c.Provisioners)
	}
	if p := c.Provisioners[2]; p.Kind != fsm.KindACME || p.ACME == nil || !p.ACME.RequireEAB || len(p.ACME.Challenges) != 3 {
		t.Errorf("acme provisioner %+v", p)
	}
}

// The acme block: where challenges are validated; and what it refuses.
func TestACMEConfig(t *testing.T) {
	c, err := Parse("test.hcl", []byte(baseConfig+joining+`acme {
  resolvers      = ["127.0.0.1:5353"]
  http01_port    = 5002
  tlsalpn01_port = 5001
}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.ACME.HTTP01Port != 5002 || c.ACME.TLSALPNPort != 5001 || len(c.ACME.Resolvers) != 1 {
		t.Errorf("acme %+v", c.ACME)
	}
	for _, bad := range []string{`acme { resolvers = ["10.0.0.2"] }`, `acme { http01_port = 70000 }`,
		`provisioner "p" {
  kind = "jwk"
  jwk_file = "k"
  require_eab = true
}`} {
		if _, err := Parse("test.hcl", []byte(baseConfig+joining+bad)); err == nil {
			t.Errorf("accepted: %s", bad)
		}
	}
}

const baseConfig = `
node_name = "n1"
data_dir  = "/tmp/x"
api {
  listen = "127.0.0.1:8443"
  tls_cert_file = "c"
  tls_key_file = "k"
}
raft { listen = "127.0.0.1:8300" }
`

// joining is a valid cluster block.
const joining = `cluster {
  join = ["https://a:1"]
  join_secret = "0123456789abcdef"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}
`

// The storage block: a retention, "forever", an archive.
func TestStorageConfig(t *testing.T) {
	c, err := Parse("test.hcl", []byte(baseConfig+joining+`storage {
  expired_retention = "720h"
  archive = "s3://bucket/quorumca?region=eu-west-1"
}`))
	if err != nil || c.Retention != 720*time.Hour || c.KeepExpired || c.Archive != "s3://bucket/quorumca?region=eu-west-1" {
		t.Fatalf("%+v %v", c, err)
	}
	if c, err = Parse("test.hcl", []byte(baseConfig+joining+"storage {\n  expired_retention = \"forever\"\n}")); err != nil || !c.KeepExpired {
		t.Fatalf("forever: %v %v", c.KeepExpired, err)
	}
}

// The snapshot block: an interval of at least a minute, a destination the
// archive stores open.
func TestSnapshotConfig(t *testing.T) {
	c, err := Parse("test.hcl", []byte(baseConfig+joining+`snapshot {
  interval    = "1h"
  destination = "s3://backups/prod?region=eu-west-1&sse=aws:kms"
}`))
	if err != nil || c.SnapshotInterval != time.Hour || c.SnapshotDestination != "s3://backups/prod?region=eu-west-1&sse=aws:kms" {
		t.Fatalf("%v %q %v", c.SnapshotInterval, c.SnapshotDestination, err)
	}
	for src, want := range map[string]string{
		"snapshot {\n  interval = \"30s\"\n  destination = \"file:///b\"\n}":   "at least 1m",
		"snapshot {\n  interval = \"1h\"\n  destination = \"ftp://b\"\n}":      "not file:///dir or s3://bucket/prefix",
		"snapshot {\n  interval = \"often\"\n  destination = \"file:///b\"\n}": "not a duration",
		"snapshot {\n  destination = \"file:///b\"\n}":                         "interval",
	} {
		if _, err := Parse("test.hcl", []byte(baseConfig+joining+src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", src, err, want)
		}
	}
}

// Keys a node creates take another key's policy and the cluster's tags.
func TestSignerNewKeyConfig(t *testing.T) {
	c, err := Parse("test.hcl", []byte(baseConfig+joining+`signer {
  new_key_policy_from = "awskms:arn:aws:kms:eu-west-1:123456789012:key/0b5f5a3c-8f0e-4a8e-9d3b-1c2d3e4f5a6b"
  new_key_tags = { quorumca-cluster = "prod" }
}`))
	if err != nil || c.Signer.NewKeyPolicyFrom != "awskms:arn:aws:kms:eu-west-1:123456789012:key/0b5f5a3c-8f0e-4a8e-9d3b-1c2d3e4f5a6b" ||
		c.Signer.NewKeyTags["quorumca-cluster"] != "prod" {
		t.Fatalf("%+v %v", c.Signer, err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"new key policy from a file", baseConfig + joining + `signer {
  new_key_policy_from = "softkey:/k"
}`, "new_key_policy_from must be an awskms: key URI"},
		{"no cluster block", baseConfig, "blocks are required"},
		{"API certificate without its key", strings.Replace(baseConfig, `tls_key_file = "k"`, "", 1) + joining, "set both api.tls_cert_file and api.tls_key_file"},
		{"no API certificate at all", strings.Replace(strings.Replace(baseConfig, `tls_key_file = "k"`, "", 1), `tls_cert_file = "c"`, "", 1) + joining, "or tls_provisioner"},
		{"neither bootstrap nor join", baseConfig + `cluster {
  join_secret = "0123456789abcdef"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}`, "bootstrap = true"},
		{"provisioner of unknown authority", baseConfig + `cluster {
  bootstrap = true
  join_secret = "0123456789abcdef"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}
provisioner "p" {
  kind = "enrollment-token"
  authority = "nope"
}`, "unknown authority"},
		{"short secret", baseConfig + `cluster {
  join = ["https://a:1"]
  join_secret = "short"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}`, "at least 16"},
		{"no secret", baseConfig + `cluster {
  join = ["https://a:1"]
  ca_file = "r"
  ca_key = "awskms:alias/c"
}`, "join_secret"},
		{"join not https", baseConfig + `cluster {
  join = ["a:1"]
  join_secret = "0123456789abcdef"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}`, "https://host:port"},
		{"unknown attribute", baseConfig + `colour = "blue"`, "Unsupported argument"},
		{"public URL not https", strings.Replace(baseConfig, `tls_key_file = "k"`, `tls_key_file = "k"
  public_urls = ["http://ca.example"]`, 1) + `cluster {
  join = ["https://a:1"]
  join_secret = "0123456789abcdef"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}`, "api.public_urls"},
		{"URI pattern that cannot be split", baseConfig + `cluster {
  bootstrap = true
  join_secret = "0123456789abcdef"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}
provisioner "p" {
  kind = "enrollment-token"
  uri = ["https://*.svc.example*/**"]
}`, "uri[0]"},
		{"soft signer not allowed", baseConfig + `cluster {
  bootstrap = true
  join_secret = "0123456789abcdef"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}
authority "default" {
  root_file = "r"
  chain_file = "c"
  key = "softkey:/k"
}`, "allow_insecure_soft_signer"},
		{"bad provisioner policy", baseConfig + `cluster {
  bootstrap = true
  join_secret = "0123456789abcdef"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}
authority "default" {
  root_file = "r"
  chain_file = "c"
  key = "softkey:/k"
}
allow_insecure_soft_signer = true
provisioner "p" {
  kind = "enrollment-token"
  ip = ["not-a-cidr"]
}`, "not a CIDR"},
		{"jwk without key", baseConfig + `cluster {
  bootstrap = true
  join_secret = "0123456789abcdef"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}
authority "default" {
  root_file = "r"
  chain_file = "c"
  key = "softkey:/k"
}
allow_insecure_soft_signer = true
provisioner "p" {
  kind = "jwk"
}`, "jwk_file"},
		{"bad ttl", baseConfig + `cluster {
  bootstrap = true
  join_secret = "0123456789abcdef"
  ca_file = "r"
  ca_key = "awskms:alias/c"
}
authority "default" {
  root_file = "r"
  chain_file = "c"
  key = "softkey:/k"
}
allow_insecure_soft_signer = true
provisioner "p" {
  kind = "enrollment-token"
  max_ttl = "forever"
}`, "max_ttl"},
		{"retention too short", baseConfig + joining + `storage {
  expired_retention = "30m"
}`, "at least 1h"},
		{"archive with nothing to archive", baseConfig + joining + `storage {
  expired_retention = "forever"
  audit_retention = "forever"
  archive = "file:///var/lib/quorumca/archive"
}`, "nothing is"},
		{"audit retention too short", baseConfig + joining + `storage {
  audit_retention = "10m"
}`, "at least 1h"},
		{"archive of unknown scheme", baseConfig + joining + `storage {
  archive = "ftp://archive.example/x"
}`, "not file:///dir or s3://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.hcl", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// The node config in README's "Setting up servers by hand" parses, and
// says what that section says it does.
func TestReadmeConfigByHandIsValid(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "### Setting up servers by hand")
	_, block, ok := strings.Cut(section, "```hcl\n")
	block, _, _ = strings.Cut(block, "```")
	if !ok {
		t.Fatal("no hcl block in the section")
	}
	c, err := Parse("README.hcl", []byte(block))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Bootstrap || !c.AllowInsecureSoftSigner || !strings.HasPrefix(c.ClusterCAKey, "softkey:/") || len(c.Authorities) != 1 ||
		!strings.HasPrefix(c.Authorities[0].Key, "softkey:/") || c.RaftAdvertise == "" {
		t.Errorf("parsed %+v", c)
	}
}

// api.tls_provisioner alone is enough: the cluster issues the certificate.
func TestAPICertificateFromTheCluster(t *testing.T) {
	src := strings.Replace(strings.Replace(baseConfig, `tls_key_file = "k"`, `tls_provisioner = "servers"`, 1), `tls_cert_file = "c"`, "", 1)
	c, err := Parse("test.hcl", []byte(src+joining))
	if err != nil || c.TLSProvisioner != "servers" || c.TLSCertFile != "" {
		t.Fatalf("%+v %v", c, err)
	}
}

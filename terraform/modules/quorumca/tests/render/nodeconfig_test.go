//go:build terraformcheck

// Package render checks the node.hcl that the Terraform module's user data
// writes against quorumca's own configuration parser. terraform/check.sh
// renders it (main.tf here) and runs
//
//	go test -tags terraformcheck ./terraform/modules/quorumca/tests/render \
//		-args -node-config FILE -node-config-without-authority FILE
package render

import (
	"flag"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/quorumca/quorumca/authority"
	"github.com/quorumca/quorumca/fsm"
	"github.com/quorumca/quorumca/node"
)

var (
	nodeConfig            = flag.String("node-config", "", "node.hcl rendered by main.tf, with the authority block")
	nodeConfigNoAuthority = flag.String("node-config-without-authority", "", "the same before the issuing chain exists")
)

func parse(t *testing.T, path string) *node.Config {
	t.Helper()
	if path == "" {
		t.Fatal("-node-config and -node-config-without-authority are required")
	}
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := node.Parse(path, src)
	if err != nil {
		t.Fatalf("quorumca rejects the module's node.hcl: %v", err)
	}
	return c
}

func TestNodeConfig(t *testing.T) {
	c := parse(t, *nodeConfig)

	check := func(what string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("node_name", c.NodeName, "quorumca-1")
	check("data_dir", c.DataDir, "/var/lib/quorumca")
	check("api.listen", c.APIListen, "0.0.0.0:8443")
	check("api.advertise", c.APIAdvertise, "ip-10-40-16-10.eu-west-1.compute.internal:8443")
	check("http.listen", c.HTTPListen, "0.0.0.0:8080")
	check("raft.advertise", c.RaftAdvertise, "10.40.16.10:8300")
	check("gossip.advertise", c.GossipAdvertise, "10.40.16.10:8301")
	check("gossip.key_file", c.GossipKeyFile, "/etc/quorumca/gossip.key")
	check("cluster.bootstrap_expect", c.BootstrapExpect, 3)
	check("cluster.voters", c.Voters, 3)
	check("cluster.join_secret_file", c.JoinSecretFile, "/etc/quorumca/join.secret")
	check("cluster.ca_key", c.ClusterCAKey, "awskms:arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555")
	check("bootstrap", c.Bootstrap, false)
	check("audit.file", c.AuditFile, "/var/lib/quorumca/audit.jsonl")
	check("acme.zone", c.ACME.Zone, "eu-west-1b")
	check("acme.perspectives", c.ACME.Perspectives, 2)
	if len(c.ACME.Resolvers) != 1 || c.ACME.Resolvers[0] != "10.40.0.2:53" {
		t.Errorf("acme.resolvers = %q, want the VPC resolver", c.ACME.Resolvers)
	}
	check("snapshot.destination", c.SnapshotDestination, "s3://quorumca-backup-20261206/quorumca?region=eu-west-1&sse=aws:kms&kms_key_id=arn:aws:kms:eu-west-1:123456789012:key/77777777-7777-4777-8777-777777777777")
	if c.SnapshotInterval != time.Hour {
		t.Errorf("snapshot.interval = %v, want 1h", c.SnapshotInterval)
	}

	if len(c.RetryJoin) != 1 || c.RetryJoin[0] != "provider=aws tag_key=quorumca-cluster tag_value=quorumca region=eu-west-1" {
		t.Errorf("gossip.retry_join = %q, want the aws provider entry for the cluster tag", c.RetryJoin)
	}
	if len(c.ProxyProtocolFrom) != 3 {
		t.Errorf("api.proxy_protocol_from = %q, want the three load balancer subnets", c.ProxyProtocolFrom)
	}
	if len(c.Authorities) != 1 {
		t.Fatalf("%d authorities, want 1", len(c.Authorities))
	}
	a := c.Authorities[0]
	check("authority name", a.Name, "default")
	check("authority key", a.Key, "awskms:arn:aws:kms:eu-west-1:123456789012:key/66666666-7777-8888-9999-000000000000")
	check("authority base_url", a.BaseURL, "http://ca.quorumca.internal:8080")
	check("api.tls_provisioner", c.TLSProvisioner, "servers")
	check("api.tls_cert_file (the api-tls-cert parameter exists)", c.TLSCertFile, "/etc/quorumca/tls/api.pem")
	check("api.tls_key_file", c.TLSKeyFile, "/etc/quorumca/tls/api-key.pem")
	if len(c.Provisioners) != 2 || c.Provisioners[0].Name != "services" || c.Provisioners[1].Name != "servers" {
		t.Fatalf("%d provisioners, want extra_config's services and servers", len(c.Provisioners))
	}
	s := c.Provisioners[1]
	check("servers kind", s.Kind, fsm.KindServer)
	check("servers authority", s.Authority, "default")
	check("servers default_ttl", s.Policy.DefaultTTL, 24*time.Hour)
	if want := []string{"ca.quorumca.internal", "quorumca-0123456789abcdef.elb.eu-west-1.amazonaws.com", "*.eu-west-1.compute.internal"}; !slices.Equal(s.Policy.DNS, want) {
		t.Errorf("servers dns = %q, want %q", s.Policy.DNS, want)
	}
	// What the cluster will check when the bootstrapping server creates it.
	if err := authority.CheckPolicy(&s.Policy); err != nil {
		t.Errorf("servers policy refused: %v", err)
	}
	if err := authority.CheckServerPolicy(&s.Policy); err != nil {
		t.Errorf("servers policy refused: %v", err)
	}
	// Each server's advertised name is one it may have.
	if got := authority.ServerNames(&s.Policy, []string{"ip-10-40-16-10.eu-west-1.compute.internal"}); !slices.Contains(got, "ip-10-40-16-10.eu-west-1.compute.internal") {
		t.Errorf("a server's names %q leave out its advertised name", got)
	}
}

// Before the operator stores the issuing chain, servers start without an
// authority block: the cluster forms, and the authority is imported later.
func TestNodeConfigWithoutAuthority(t *testing.T) {
	c := parse(t, *nodeConfigNoAuthority)
	if len(c.Authorities) != 0 {
		t.Errorf("%d authorities, want none", len(c.Authorities))
	}
	if c.BootstrapExpect != 3 || c.ClusterCAKey == "" {
		t.Errorf("bootstrap_expect %d, cluster.ca_key %q: want 3 and the cluster CA key", c.BootstrapExpect, c.ClusterCAKey)
	}
	// Without the optional api-tls-* parameters: the cluster's certificate
	// only (a placeholder until the authority exists).
	if c.TLSProvisioner != "servers" || c.TLSCertFile != "" || c.TLSKeyFile != "" {
		t.Errorf("api tls_provisioner %q, files %q %q: want servers and no files", c.TLSProvisioner, c.TLSCertFile, c.TLSKeyFile)
	}
}

# Renders the servers' user data with representative values, without AWS, so
# that check.sh can check the boot script (bash -n, shellcheck) and parse
# the node.hcl it writes with quorumca's own parser (nodeconfig_test.go).

terraform {
  required_version = ">= 1.9"
}

module "user_data" {
  source = "../../modules/user-data"

  cluster_name        = "quorumca"
  cluster_tag_key     = "quorumca-cluster"
  region              = "eu-west-1"
  ports               = { api = 8443, http = 8080, raft = 8300, gossip = 8301 }
  http_enabled        = true
  proxy_protocol_from = ["10.40.0.0/20", "10.40.16.0/20", "10.40.32.0/20"]
  bootstrap_expect    = 3
  voters              = 3
  dead_server_cleanup = "30m"
  cluster_ca_key_arn  = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  issuing_key_arn     = "arn:aws:kms:eu-west-1:123456789012:key/66666666-7777-8888-9999-000000000000"
  base_url            = "http://ca.quorumca.internal:8080"
  api_server_names    = ["ca.quorumca.internal", "quorumca-0123456789abcdef.elb.eu-west-1.amazonaws.com", "*.eu-west-1.compute.internal"]
  api_certificate_ttl = "24h"
  signer_rate         = 80
  signer_burst        = 16
  acme                = { perspectives = 2, resolvers = ["10.40.0.2:53"] }
  parameter_prefix    = "/quorumca/quorumca"
  parameters = {
    gossip_key    = "/quorumca/quorumca/gossip-key"
    join_secret   = "/quorumca/quorumca/join-secret"
    api_tls_cert  = "/quorumca/quorumca/api-tls-cert"
    api_tls_key   = "/quorumca/quorumca/api-tls-key"
    root_ca       = "/quorumca/quorumca/root-ca"
    issuing_chain = "/quorumca/quorumca/issuing-chain"
  }

  snapshot = {
    interval    = "1h"
    destination = "s3://quorumca-backup-20261206/quorumca?region=eu-west-1&sse=aws:kms&kms_key_id=arn:aws:kms:eu-west-1:123456789012:key/77777777-7777-4777-8777-777777777777"
  }

  cloudwatch = {
    audit_log_group   = "/quorumca/quorumca/audit"
    server_log_group  = "/quorumca/quorumca/server"
    metrics_log_group = "/quorumca/quorumca/metrics"
    namespace         = "quorumca/quorumca"
  }

  lifecycle_hooks = {
    asg_name                    = "quorumca"
    launch_hook                 = "quorumca-launch"
    termination_hook            = "quorumca-termination"
    ready_stable_seconds        = 60
    launch_timeout_seconds      = 1800
    termination_timeout_seconds = 900
  }

  # What an operator might append: a provisioner of their own.
  extra_config = <<-EOT
    provisioner "services" {
      kind        = "enrollment-token"
      authority   = "default"
      dns         = ["*.svc.quorumca.internal"]
      default_ttl = "24h"
      eku         = "both"
    }
  EOT
}

output "user_data" {
  value = module.user_data.user_data
}

# node.hcl as a server writes it at boot, with and without an issuing chain.
locals {
  node_hcl = replace(replace(replace(replace(module.user_data.node_config,
    "@NODE_NAME@", "quorumca-1"),
    "@PRIVATE_IP@", "10.40.16.10"),
    "@PRIVATE_DNS@", "ip-10-40-16-10.eu-west-1.compute.internal"),
  "@AZ@", "eu-west-1b")
}

# With the authority, as a server writes it when the optional api-tls-*
# parameters exist; without, when they do not.
output "node_hcl" {
  value = "${replace(local.node_hcl, "  #@API_TLS_FILES@ ", "  ")}\n\n${module.user_data.authority_config}\n"
}

output "node_hcl_without_authority" {
  value = "${join("\n", [for l in split("\n", local.node_hcl) : l if !strcontains(l, "#@API_TLS_FILES@")])}\n"
}

output "systemd_unit" {
  value = module.user_data.systemd_unit
}

output "lifecycle_script" {
  value = module.user_data.lifecycle_script
}

output "lifecycle_unit" {
  value = module.user_data.lifecycle_unit
}

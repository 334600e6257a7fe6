# Renders the servers' user data: a boot script that claims a data volume,
# fetches the cluster's secrets, and writes node.hcl and the systemd unit.
# A module of its own, without providers, so that the rendered script and
# configuration can be checked outside AWS (tests/render, check.sh).

terraform {
  required_version = ">= 1.9"
}

variable "cluster_name" {
  description = "Name of the cluster (value of the cluster tag)."
  type        = string
}

variable "cluster_tag_key" {
  description = "Tag that marks the cluster's instances and data volumes."
  type        = string
}

variable "region" {
  description = "AWS region of the cluster."
  type        = string
}

variable "ports" {
  description = "Listener ports."
  type        = object({ api = number, http = number, raft = number, gossip = number })
}

variable "http_enabled" {
  description = "Whether servers serve CRLs and OCSP over plain HTTP."
  type        = bool
}

variable "proxy_protocol_from" {
  description = "CIDRs whose PROXY protocol headers the servers trust (the load balancer's subnets)."
  type        = list(string)
}

variable "bootstrap_expect" {
  description = "Servers that form the cluster."
  type        = number
}

variable "voters" {
  description = "Raft voters to keep."
  type        = number
}

variable "dead_server_cleanup" {
  description = "How long a server may be gone before it is removed."
  type        = string
}

variable "cluster_ca_key_arn" {
  description = "ARN of the cluster CA key."
  type        = string
}

variable "issuing_key_arn" {
  description = "ARN of the issuing key."
  type        = string
}

variable "base_url" {
  description = "Plain-HTTP URL that issued certificates name for CRLs and OCSP."
  type        = string
}

variable "signer_rate" {
  description = "KMS Sign requests per second per key for one server."
  type        = number
}

variable "signer_burst" {
  description = "Burst above signer_rate."
  type        = number
}

variable "acme" {
  description = "The acme block of node.hcl: zones that must see a challenge's answer, and the resolvers validation asks (empty: the system's). Each server's zone is its availability zone, filled in at boot."
  type = object({
    perspectives = number
    resolvers    = list(string)
  })
  default = { perspectives = 1, resolvers = [] }
}

variable "extra_config" {
  description = "HCL appended to node.hcl."
  type        = string
}

variable "lifecycle_hooks" {
  description = "The auto-scaling group and its lifecycle hooks, which the servers complete: the launch hook once the new server has stayed ready, the termination hook once the others hold a healthy quorum without it."
  type = object({
    asg_name                    = string
    launch_hook                 = string
    termination_hook            = string
    ready_stable_seconds        = number
    launch_timeout_seconds      = number
    termination_timeout_seconds = number
  })
}

variable "snapshot" {
  description = "The snapshot block of node.hcl: how often the leader writes a snapshot, and where. Null: none."
  type = object({
    interval    = string
    destination = string
  })
  default = null
}

variable "cloudwatch" {
  description = "Shipping to CloudWatch: the log groups of the audit log, the servers' journal and the metrics (embedded metric format), and the metrics namespace. Null: nothing is shipped."
  type = object({
    audit_log_group   = string
    server_log_group  = string
    metrics_log_group = string
    namespace         = string
  })
  default = null
}

variable "api_server_names" {
  description = "DNS names and *.domain patterns of the servers' own API certificates (the servers provisioner)."
  type        = list(string)
}

variable "api_certificate_ttl" {
  description = "Lifetime of a server's API certificate."
  type        = string
}

variable "parameter_prefix" {
  description = "SSM path of the cluster's parameters."
  type        = string
}

variable "parameters" {
  description = "Full names of the cluster's SSM parameters."
  type = object({
    gossip_key    = string
    join_secret   = string
    api_tls_cert  = string
    api_tls_key   = string
    root_ca       = string
    issuing_chain = string
  })
}

locals {
  node_config = trimspace(templatefile("${path.module}/templates/node.hcl.tftpl", {
    api_port            = var.ports.api
    http_port           = var.ports.http
    raft_port           = var.ports.raft
    gossip_port         = var.ports.gossip
    http_enabled        = var.http_enabled
    proxy_protocol_from = var.proxy_protocol_from
    cluster_tag_key     = var.cluster_tag_key
    cluster_name        = var.cluster_name
    region              = var.region
    bootstrap_expect    = var.bootstrap_expect
    voters              = var.voters
    dead_server_cleanup = var.dead_server_cleanup
    cluster_ca_key_arn  = var.cluster_ca_key_arn
    signer_rate         = var.signer_rate
    signer_burst        = var.signer_burst
    extra_config        = trimspace(var.extra_config)
    acme                = var.acme
    snapshot            = var.snapshot
  }))

  authority_config = trimspace(templatefile("${path.module}/templates/authority.hcl.tftpl", {
    issuing_key_arn     = var.issuing_key_arn
    base_url            = var.base_url
    api_server_names    = var.api_server_names
    api_certificate_ttl = var.api_certificate_ttl
  }))

  systemd_unit = trimspace(file("${path.module}/templates/quorumca.service"))

  lifecycle_script = trimspace(templatefile("${path.module}/templates/quorumca-lifecycle.sh.tftpl", {
    cluster_name                = var.cluster_name
    cluster_tag_key             = var.cluster_tag_key
    region                      = var.region
    api_port                    = var.ports.api
    asg_name                    = var.lifecycle_hooks.asg_name
    termination_hook            = var.lifecycle_hooks.termination_hook
    termination_timeout_seconds = var.lifecycle_hooks.termination_timeout_seconds
  }))

  lifecycle_unit = trimspace(file("${path.module}/templates/quorumca-lifecycle.service"))

  # The CloudWatch agent: the audit file and the journal copy as logs, and
  # quorumca's own metrics (the admin listener's /v1/metrics) as embedded
  # metric format, one dimension set: the cluster.
  cloudwatch_agent_config = var.cloudwatch == null ? "" : jsonencode({
    agent = { run_as_user = "root" }
    logs = {
      logs_collected = {
        files = {
          collect_list = [
            {
              file_path       = "/var/lib/quorumca/audit.jsonl"
              log_group_name  = var.cloudwatch.audit_log_group
              log_stream_name = "{instance_id}"
            },
            {
              file_path       = "/var/log/quorumca/server.log"
              log_group_name  = var.cloudwatch.server_log_group
              log_stream_name = "{instance_id}"
            },
          ]
        }
      }
      metrics_collected = {
        prometheus = {
          cluster_name           = var.cluster_name
          log_group_name         = var.cloudwatch.metrics_log_group
          prometheus_config_path = "/opt/aws/amazon-cloudwatch-agent/etc/quorumca-prometheus.yaml"
          emf_processor = {
            metric_declaration_dedup = true
            metric_namespace         = var.cloudwatch.namespace
            metric_declaration = [
              {
                source_labels    = ["job"]
                label_matcher    = "^quorumca$"
                dimensions       = [["cluster"]]
                metric_selectors = ["^quorumca_(ca_cert_expiry_seconds|api_certificate_expiry_seconds|crl_next_update_seconds|raft_term|raft_voters|raft_last_contact_seconds|gossip_members|fsm_size_bytes|audit_entries)$"]
              },
              {
                source_labels    = ["job"]
                label_matcher    = "^quorumca$"
                dimensions       = [["cluster", "outcome"]]
                metric_selectors = ["^quorumca_(operations_total|snapshots_total)$"]
              },
            ]
          }
        }
      }
    }
  })

  prometheus_config = var.cloudwatch == null ? "" : yamlencode({
    global = { scrape_interval = "1m", scrape_timeout = "10s" }
    scrape_configs = [{
      job_name       = "quorumca"
      metrics_path   = "/v1/metrics"
      static_configs = [{ targets = ["127.0.0.1:9090"], labels = { cluster = var.cluster_name } }]
    }]
  })

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    cluster_name            = var.cluster_name
    cluster_tag_key         = var.cluster_tag_key
    region                  = var.region
    api_port                = var.ports.api
    parameter_prefix        = var.parameter_prefix
    parameters              = var.parameters
    node_config             = local.node_config
    authority_config        = local.authority_config
    systemd_unit            = local.systemd_unit
    cloudwatch_agent_config = local.cloudwatch_agent_config
    prometheus_config       = local.prometheus_config
    lifecycle_script        = local.lifecycle_script
    lifecycle_unit          = local.lifecycle_unit
    asg_name                = var.lifecycle_hooks.asg_name
    launch_hook             = var.lifecycle_hooks.launch_hook
    ready_stable            = var.lifecycle_hooks.ready_stable_seconds
    # What is left of the launch hook's timeout for the wait, after the
    # volume and the parameters: the hook abandons the instance at its end.
    ready_timeout = var.lifecycle_hooks.launch_timeout_seconds
  })
}

output "user_data" {
  description = "The boot script (plain text; base64-encode it for a launch template)."
  value       = local.user_data
}

output "node_config" {
  description = "node.hcl as the script writes it, before the per-server placeholders (@NODE_NAME@, @PRIVATE_IP@, @PRIVATE_DNS@, @AZ@) are filled in."
  value       = local.node_config
}

output "authority_config" {
  description = "The authority block the script appends once the issuing chain exists."
  value       = local.authority_config
}

output "lifecycle_script" {
  description = "The termination watcher the script installs at /usr/local/sbin/quorumca-lifecycle."
  value       = local.lifecycle_script
}

output "lifecycle_unit" {
  description = "The quorumca-lifecycle.service unit that runs it."
  value       = local.lifecycle_unit
}

output "cloudwatch_agent_config" {
  description = "The CloudWatch agent's configuration (JSON), or \"\" when nothing is shipped."
  value       = local.cloudwatch_agent_config
}

output "prometheus_config" {
  description = "The agent's scrape configuration of quorumca's metrics (YAML), or \"\"."
  value       = local.prometheus_config
}

output "systemd_unit" {
  description = "The quorumca.service unit the script installs."
  value       = local.systemd_unit
}

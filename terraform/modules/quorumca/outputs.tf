output "lb_dns_name" {
  description = "DNS name of the network load balancer. Clients use https://<this>:8443, or a name of yours aliased to it."
  value       = aws_lb.this.dns_name
}

output "lb_zone_id" {
  description = "Route 53 zone ID of the load balancer, for an alias record."
  value       = aws_lb.this.zone_id
}

output "lb_arn" {
  description = "ARN of the network load balancer."
  value       = aws_lb.this.arn
}

output "api_url" {
  description = "The cluster's API through the load balancer."
  value       = "https://${aws_lb.this.dns_name}:${local.ports.api}"
}

output "revocation_base_url" {
  description = "Plain-HTTP URL that issued certificates name for CRLs and OCSP."
  value       = local.revocation_base_url
}

output "kms_key_arn" {
  description = "ARN of the issuing key (ECC_NIST_P256, SIGN_VERIFY). Its signer URI is kms_key_uri."
  value       = aws_kms_key.this["issuing"].arn
}

output "kms_key_uri" {
  description = "Signer URI of the issuing key, for quorumca operator authority csr/import -key."
  value       = "awskms:${aws_kms_key.this["issuing"].arn}"
}

output "issuing_key_uris" {
  description = "Signer URIs of every issuing key generation, oldest first: the last is the one to rotate to."
  value       = [for k in local.issuing_key_names : "awskms:${aws_kms_key.this[k].arn}"]
}

output "cluster_ca_kms_key_arn" {
  description = "ARN of the cluster CA key that certifies the servers for their mutual TLS (cluster.ca_key)."
  value       = aws_kms_key.this["cluster-ca"].arn
}

output "node_security_group_id" {
  description = "Security group of the servers."
  value       = aws_security_group.node.id
}

output "lb_security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.lb.id
}

output "asg_name" {
  description = "Name of the servers' auto-scaling group."
  value       = aws_autoscaling_group.this.name
}

output "iam_role_arn" {
  description = "ARN of the servers' IAM role (the only principal allowed to sign with the keys)."
  value       = aws_iam_role.node.arn
}

output "iam_role_name" {
  description = "Name of the servers' IAM role, to attach further policies (log shipping, for example)."
  value       = aws_iam_role.node.name
}

output "data_volume_ids" {
  description = "Data volumes by node name."
  value       = { for v in aws_ebs_volume.data : v.tags["quorumca-node"] => v.id }
}

output "ssm_parameters" {
  description = "SSM parameters the operator must create before the servers can start (issuing_chain: once the intermediate is signed)."
  value       = local.ssm_parameters
}

output "alert_topic_arn" {
  description = "SNS topic of the security alerts (signing key policy rewritten, key disabled or scheduled for deletion): subscribe to it."
  value       = local.alert_topic_arn
}

output "kms_key_policies" {
  description = "The signing keys' policies by key (issuing, cluster-ca), to review or to check in tests."
  value       = { for k, v in aws_kms_key.this : k => v.policy }
}

output "log_groups" {
  description = "CloudWatch log groups by content (audit, server, metrics); empty without cloudwatch_enabled."
  value       = { for k, g in aws_cloudwatch_log_group.this : k => g.name }
}

output "metrics_namespace" {
  description = "CloudWatch namespace of quorumca's own metrics (cloudwatch_enabled)."
  value       = var.cloudwatch_enabled ? local.metrics_namespace : null
}

output "backup_bucket" {
  description = "S3 bucket of the scheduled snapshots (under <name>/); null without backup_enabled."
  value       = var.backup_enabled ? aws_s3_bucket.backup[0].id : null
}

output "backup_vault_name" {
  description = "AWS Backup vault of the data volumes' daily recovery points; null without backup_enabled."
  value       = var.backup_enabled ? aws_backup_vault.this[0].name : null
}

output "ebs_key_policy_statements" {
  description = "With ebs_kms_key_arn: the statements to add to that key's policy (JSON list), so that the auto-scaling group's service-linked role can launch servers with encrypted root volumes and the servers can attach their encrypted data volumes. Null without ebs_kms_key_arn."
  value = var.ebs_kms_key_arn == null ? null : jsonencode([
    {
      Sid       = "AutoScalingUsesTheKey"
      Effect    = "Allow"
      Principal = { AWS = local.autoscaling_service_role }
      Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
      Resource  = "*"
    },
    {
      Sid       = "AutoScalingGrantsForVolumes"
      Effect    = "Allow"
      Principal = { AWS = local.autoscaling_service_role }
      Action    = ["kms:CreateGrant"]
      Resource  = "*"
      Condition = { Bool = { "kms:GrantIsForAWSResource" = "true" } }
    },
    {
      Sid       = "QuorumcaServersAttachVolumes"
      Effect    = "Allow"
      Principal = { AWS = aws_iam_role.node.arn }
      Action    = ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey"]
      Resource  = "*"
      Condition = {
        StringEquals = { "kms:ViaService" = "ec2.${local.region}.${data.aws_partition.current.dns_suffix}" }
        Bool         = { "kms:GrantIsForAWSResource" = "true" }
      }
    },
  ])
}

output "server_provisioner" {
  description = "The servers provisioner as a JSON document, for `quorumca provisioner create -f -` when the authority was imported after the cluster formed (the servers' config creates it when the issuing chain exists at boot)."
  value = jsonencode({
    name      = "servers"
    kind      = "server"
    authority = "default"
    policy    = { dns = local.api_server_names, eku = "server", default_ttl = var.api_certificate_ttl, max_ttl = var.api_certificate_ttl }
  })
}

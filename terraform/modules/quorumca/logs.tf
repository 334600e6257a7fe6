# The servers' audit log, their quorumca journal and their metrics, shipped
# by the CloudWatch agent (cloudwatch_enabled): log groups encrypted with a
# KMS key, kept log_retention_days (the audit log audit_log_retention_days).
# A server's own audit file lives on its data volume and outlives the
# instance; the log group outlives the volume.

locals {
  metrics_namespace = "quorumca/${var.name}"
  log_groups = var.cloudwatch_enabled ? {
    audit   = var.audit_log_retention_days
    server  = var.log_retention_days
    metrics = var.log_retention_days
  } : {}
  logs_kms_key_arn     = var.logs_kms_key_arn != null ? var.logs_kms_key_arn : try(aws_kms_key.logs[0].arn, null)
  log_group_arn_prefix = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/quorumca/${var.name}"
}

resource "aws_kms_key" "logs" {
  count = var.cloudwatch_enabled && var.logs_kms_key_arn == null ? 1 : 0

  description             = "quorumca ${var.name}: CloudWatch Logs encryption"
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_in_days

  # Administrators manage it; CloudWatch Logs uses it, for this cluster's
  # log groups only (the encryption context names the group).
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      local.kms_administration,
      {
        Sid       = "CloudWatchLogsEncrypts"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.${data.aws_partition.current.dns_suffix}" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "${local.log_group_arn_prefix}/*" }
        }
      },
    ]
  })

  tags = merge(local.tags, { Name = "${var.name}-logs" })
}

resource "aws_cloudwatch_log_group" "this" {
  for_each = local.log_groups

  name              = "/quorumca/${var.name}/${each.key}"
  retention_in_days = each.value
  kms_key_id        = local.logs_kms_key_arn

  tags = local.tags
}

# Backups (backup_enabled): the leader writes a snapshot of the whole state
# (node.hcl's snapshot block) every snapshot_interval to a bucket that
# keeps every version, locks each object against deletion for
# backup_object_lock_days, encrypts with a key of its own and expires
# snapshots after backup_retention_days; and AWS Backup snapshots the data
# volumes daily, copied to another region's vault when
# backup_copy_vault_arn is set. README: "Backup and restore".

locals {
  backup_prefix = var.name
  # snapshot_interval in seconds ("30m", "1h").
  snapshot_interval_seconds = tonumber(trimsuffix(trimsuffix(var.snapshot_interval, "m"), "h")) * (endswith(var.snapshot_interval, "h") ? 3600 : 60)
  snapshot = var.backup_enabled ? {
    interval    = var.snapshot_interval
    destination = "s3://${aws_s3_bucket.backup[0].id}/${local.backup_prefix}?region=${local.region}&sse=aws:kms&kms_key_id=${aws_kms_key.backup[0].arn}"
  } : null
}

resource "aws_kms_key" "backup" {
  count = var.backup_enabled ? 1 : 0

  description             = "quorumca ${var.name}: backups"
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_in_days

  # The servers encrypt snapshots through S3; the administrators read them
  # back through S3 for a restore; nobody uses the key otherwise.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      local.kms_administration,
      {
        Sid       = "ServersWriteSnapshots"
        Effect    = "Allow"
        Principal = { AWS = aws_iam_role.node.arn }
        Action    = ["kms:GenerateDataKey", "kms:Encrypt"]
        Resource  = "*"
        Condition = { StringEquals = { "kms:ViaService" = "s3.${local.region}.${data.aws_partition.current.dns_suffix}" } }
      },
      {
        Sid       = "AdministratorsRestore"
        Effect    = "Allow"
        Principal = { AWS = var.kms_key_administrators }
        Action    = ["kms:Decrypt"]
        Resource  = "*"
        Condition = { StringEquals = { "kms:ViaService" = "s3.${local.region}.${data.aws_partition.current.dns_suffix}" } }
      },
    ]
  })

  tags = merge(local.tags, { Name = "${var.name}-backup" })
}

resource "aws_s3_bucket" "backup" {
  count = var.backup_enabled ? 1 : 0

  bucket_prefix       = "${substr(var.name, 0, 20)}-backup-"
  object_lock_enabled = true
  tags                = local.tags
}

resource "aws_s3_bucket_versioning" "backup" {
  count = var.backup_enabled ? 1 : 0

  bucket = aws_s3_bucket.backup[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "backup" {
  count = var.backup_enabled ? 1 : 0

  bucket = aws_s3_bucket.backup[0].id
  rule {
    default_retention {
      mode = var.backup_object_lock_mode
      days = var.backup_object_lock_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.backup]
}

resource "aws_s3_bucket_server_side_encryption_configuration" "backup" {
  count = var.backup_enabled ? 1 : 0

  bucket = aws_s3_bucket.backup[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.backup[0].arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "backup" {
  count = var.backup_enabled ? 1 : 0

  bucket                  = aws_s3_bucket.backup[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "backup" {
  count = var.backup_enabled ? 1 : 0

  bucket = aws_s3_bucket.backup[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "backup" {
  count = var.backup_enabled ? 1 : 0

  bucket = aws_s3_bucket.backup[0].id
  rule {
    id     = "expire-snapshots"
    status = "Enabled"
    filter {
      prefix = "${local.backup_prefix}/"
    }
    expiration {
      days = var.backup_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.backup_retention_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
  depends_on = [aws_s3_bucket_versioning.backup]
}

# TLS only, and snapshots only under the cluster's key: a PutObject that
# names another key (or none) is refused.
resource "aws_s3_bucket_policy" "backup" {
  count = var.backup_enabled ? 1 : 0

  bucket = aws_s3_bucket.backup[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "TLSOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.backup[0].arn, "${aws_s3_bucket.backup[0].arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        Sid       = "ClusterKeyOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.backup[0].arn}/*"
        Condition = { StringNotEqualsIfExists = { "s3:x-amz-server-side-encryption-aws-kms-key-id" = aws_kms_key.backup[0].arn } }
      },
    ]
  })
  depends_on = [aws_s3_bucket_public_access_block.backup]
}

# AWS Backup: a daily recovery point of every data volume (crash-consistent:
# a server's state survives a crash, so a volume restores as a server that
# crashed), kept backup_retention_days, copied to another region's vault.

resource "aws_backup_vault" "this" {
  count = var.backup_enabled ? 1 : 0

  # The AWS managed key: EBS recovery points keep their volumes' own
  # encryption, and a vault under a customer key needs grants on it.
  name = "${var.name}-data"
  tags = local.tags
}

resource "aws_backup_plan" "this" {
  count = var.backup_enabled ? 1 : 0

  name = "${var.name}-data"
  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.this[0].name
    schedule          = "cron(0 3 * * ? *)"
    lifecycle {
      delete_after = var.backup_retention_days
    }
    dynamic "copy_action" {
      for_each = var.backup_copy_vault_arn == null ? [] : [var.backup_copy_vault_arn]
      content {
        destination_vault_arn = copy_action.value
        lifecycle {
          delete_after = var.backup_retention_days
        }
      }
    }
  }
  tags = local.tags
}

resource "aws_iam_role" "backup" {
  count = var.backup_enabled ? 1 : 0

  name                 = "${var.name}-backup"
  path                 = var.iam_role_path
  permissions_boundary = var.iam_permissions_boundary_arn
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "backup.${data.aws_partition.current.dns_suffix}" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "backup" {
  for_each = var.backup_enabled ? toset(["AWSBackupServiceRolePolicyForBackup", "AWSBackupServiceRolePolicyForRestores"]) : toset([])

  role       = aws_iam_role.backup[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/${each.key}"
}

resource "aws_backup_selection" "this" {
  count = var.backup_enabled ? 1 : 0

  name         = "${var.name}-data"
  plan_id      = aws_backup_plan.this[0].id
  iam_role_arn = aws_iam_role.backup[0].arn
  resources    = [for v in aws_ebs_volume.data : v.arn]
}

# Two asymmetric keys that never leave KMS: the issuing key of the
# authority's intermediate, and the key of the cluster CA that certifies the
# servers for their mutual TLS (cluster.ca_key). Only the servers' role may
# sign with them.

locals {
  # The account keeps administration, as AWS requires (a key nobody can
  # manage cannot be fixed or deleted), but no use: the list names actions
  # one by one, so no wildcard grants kms:Sign, and kms:CreateGrant is left
  # out so that administrators cannot hand out signing through a grant.
  kms_admin_actions = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:EnableKey",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
  ]

  # What a server does with a key: open it (DescribeKey, GetPublicKey) and sign.
  kms_node_actions = ["kms:DescribeKey", "kms:GetPublicKey", "kms:Sign"]

  kms_key_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = local.kms_admin_actions
        Resource  = "*"
      },
      {
        Sid       = "ServersSign"
        Effect    = "Allow"
        Principal = { AWS = aws_iam_role.node.arn }
        Action    = local.kms_node_actions
        Resource  = "*"
      },
    ]
  })

  kms_keys = {
    issuing    = "issuing key of the ${var.name} quorumca authority (intermediate CA)"
    cluster-ca = "cluster CA key of the ${var.name} quorumca servers (node certificates for mutual TLS)"
  }
}

resource "aws_kms_key" "this" {
  for_each = local.kms_keys

  description              = each.value
  customer_master_key_spec = "ECC_NIST_P256"
  key_usage                = "SIGN_VERIFY"
  deletion_window_in_days  = var.kms_deletion_window_in_days
  policy                   = local.kms_key_policy

  tags = merge(local.tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_kms_alias" "this" {
  for_each = local.kms_keys

  name          = "alias/${var.name}-${each.key}"
  target_key_id = aws_kms_key.this[each.key].key_id
}

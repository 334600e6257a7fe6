# Asymmetric keys that never leave KMS: the issuing key of the authority's
# intermediate (one per generation), and the key of the cluster CA that
# certifies the servers for their mutual TLS (cluster.ca_key). Only the servers' role may
# sign with them; the administrators named in kms_key_administrators manage
# them.

locals {
  # What the administrators may do: everything that keeps a key manageable,
  # named action by action, so no wildcard grants kms:Sign, and without
  # kms:CreateGrant, so that nobody can hand out signing through a grant.
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

  # The policy names its principals, and not the account root: with the
  # root named, any IAM policy in the account could grant use of the keys.
  # The Deny statements hold whatever an Allow elsewhere says (a later
  # policy edit, a grant made before, an administrator's own IAM policy).
  # The issuing keys may also sign for the servers of a cluster restored
  # from this one's backups (restore_signer_role_arns); the cluster CA key
  # only for this cluster's servers: node identity is never shared.
  kms_signers = {
    issuing    = concat([aws_iam_role.node.arn], var.restore_signer_role_arns)
    cluster-ca = [aws_iam_role.node.arn]
  }
  # Every key of the module: the administrators manage it.
  kms_administration = {
    Sid       = "Administration"
    Effect    = "Allow"
    Principal = { AWS = var.kms_key_administrators }
    Action    = local.kms_admin_actions
    Resource  = "*"
  }

  kms_key_policies = { for kind, signers in local.kms_signers : kind => jsonencode({
    Version = "2012-10-17"
    Statement = concat([
      local.kms_administration,
      {
        Sid       = "ServersSign"
        Effect    = "Allow"
        Principal = { AWS = signers }
        Action    = local.kms_node_actions
        Resource  = "*"
      },
      {
        Sid       = "NobodyElseSigns"
        Effect    = "Deny"
        Principal = { AWS = "*" }
        Action    = ["kms:Sign"]
        Resource  = "*"
        Condition = { ArnNotEquals = { "aws:PrincipalArn" = signers } }
      },
      {
        # Not the servers either: nothing in quorumca needs a grant.
        Sid       = "NoGrants"
        Effect    = "Deny"
        Principal = { AWS = "*" }
        Action    = ["kms:CreateGrant"]
        Resource  = "*"
      },
      ], var.kms_vpc_endpoint_id == null ? [] : [
      {
        # Stolen instance credentials are of no use for signing from
        # outside the VPC.
        Sid       = "SignOnlyThroughTheEndpoint"
        Effect    = "Deny"
        Principal = { AWS = "*" }
        Action    = ["kms:Sign"]
        Resource  = "*"
        Condition = { StringNotEquals = { "aws:SourceVpce" = var.kms_vpc_endpoint_id } }
      },
    ])
  }) }

  # Each generation of the issuing key (rotation: raise
  # issuing_key_generations, then csr and import with the new key) is made
  # here, under the same policy and alerts: the servers never create keys,
  # since a server that could would choose the new key's policy.
  issuing_key_names = concat(["issuing"], [for g in range(2, var.issuing_key_generations + 1) : "issuing-${g}"])
  kms_keys = merge({
    cluster-ca = "cluster CA key of the ${var.name} quorumca servers (node certificates for mutual TLS)"
    }, { for i, k in local.issuing_key_names :
    k => "issuing key of the ${var.name} quorumca authority (intermediate CA)${i == 0 ? "" : ", generation ${i + 1}"}"
  })
}

resource "aws_kms_key" "this" {
  for_each = local.kms_keys

  description              = each.value
  customer_master_key_spec = "ECC_NIST_P256"
  key_usage                = "SIGN_VERIFY"
  deletion_window_in_days  = var.kms_deletion_window_in_days
  multi_region             = var.kms_multi_region
  policy                   = each.key == "cluster-ca" ? local.kms_key_policies["cluster-ca"] : local.kms_key_policies["issuing"]

  tags = merge(local.tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_kms_alias" "this" {
  for_each = local.kms_keys

  name          = "alias/${var.name}-${each.key}"
  target_key_id = aws_kms_key.this[each.key].key_id
}

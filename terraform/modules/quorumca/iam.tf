resource "aws_iam_role" "node" {
  name                 = "${var.name}-node"
  path                 = var.iam_role_path
  description          = "quorumca servers of cluster ${var.name}"
  permissions_boundary = var.iam_permissions_boundary_arn

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.${data.aws_partition.current.dns_suffix}" }
      Action    = "sts:AssumeRole"
    }]
  })

  tags = local.tags
}

locals {
  volume_arn_pattern   = "arn:${local.partition}:ec2:${local.region}:${local.account_id}:volume/*"
  instance_arn_pattern = "arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/*"
  cluster_tag_condition = {
    StringEquals = { "aws:ResourceTag/${local.cluster_tag_key}" = var.name }
  }

  node_policy_statements = concat(
    [
      {
        # Cloud auto-join: gossip finds the other servers by their tag.
        # Describe calls cannot be limited to resources.
        Sid      = "AutoJoin"
        Effect   = "Allow"
        Action   = ["ec2:DescribeInstances"]
        Resource = "*"
      },
      {
        Sid      = "FindDataVolume"
        Effect   = "Allow"
        Action   = ["ec2:DescribeVolumes"]
        Resource = "*"
      },
      {
        # AttachVolume is authorized on the volume and on the instance: both
        # must belong to this cluster.
        Sid       = "AttachClusterVolume"
        Effect    = "Allow"
        Action    = ["ec2:AttachVolume"]
        Resource  = [local.volume_arn_pattern]
        Condition = local.cluster_tag_condition
      },
      {
        Sid       = "AttachToClusterInstance"
        Effect    = "Allow"
        Action    = ["ec2:AttachVolume"]
        Resource  = [local.instance_arn_pattern]
        Condition = local.cluster_tag_condition
      },
      {
        # The servers complete their own lifecycle hooks (user data, and
        # quorumca-lifecycle). The group's ARN, not a reference to it: the
        # group waits for this policy.
        Sid      = "CompleteLifecycleHooks"
        Effect   = "Allow"
        Action   = ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"]
        Resource = ["arn:${local.partition}:autoscaling:${local.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/${var.name}"]
      },
      {
        # A server marks the data volume it uses (a replacement prefers a
        # used volume to a blank spare): that one tag only.
        Sid       = "MarkVolumeUsed"
        Effect    = "Allow"
        Action    = ["ec2:CreateTags"]
        Resource  = [local.volume_arn_pattern]
        Condition = merge(local.cluster_tag_condition, { "ForAllValues:StringEquals" = { "aws:TagKeys" = ["quorumca-used"] } })
      },
      {
        # The termination watcher: which instances of the group are held
        # by the termination hook (a read, not limited to resources).
        Sid      = "SeeTerminations"
        Effect   = "Allow"
        Action   = ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances"]
        Resource = "*"
      },
      {
        # ... and its turn to drain: a tag on its own cluster's instances,
        # that one tag only.
        Sid       = "MarkDraining"
        Effect    = "Allow"
        Action    = ["ec2:CreateTags", "ec2:DeleteTags"]
        Resource  = [local.instance_arn_pattern]
        Condition = merge(local.cluster_tag_condition, { "ForAllValues:StringEquals" = { "aws:TagKeys" = ["quorumca-draining"] } })
      },
      {
        Sid      = "ReadClusterParameters"
        Effect   = "Allow"
        Action   = ["ssm:GetParameter"]
        Resource = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${local.ssm_parameter_prefix}/*"]
      },
    ],
    var.ebs_kms_key_arn == null ? [] : [
      {
        # A data volume under a customer managed key: attaching it makes
        # EC2 create a grant on the key for the instance, on the caller's
        # behalf. Through EC2 only, for AWS resources only.
        Sid      = "AttachEncryptedVolumes"
        Effect   = "Allow"
        Action   = ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey"]
        Resource = [var.ebs_kms_key_arn]
        Condition = {
          StringEquals = { "kms:ViaService" = "ec2.${local.region}.${data.aws_partition.current.dns_suffix}" }
          Bool         = { "kms:GrantIsForAWSResource" = "true" }
        }
      },
    ],
    var.backup_enabled ? [
      {
        # Scheduled snapshots: written under the cluster's prefix, never
        # read back or deleted by the servers (Object Lock keeps them).
        Sid      = "WriteSnapshots"
        Effect   = "Allow"
        Action   = ["s3:PutObject"]
        Resource = ["${aws_s3_bucket.backup[0].arn}/${local.backup_prefix}/*"]
      },
      {
        # Listing (a new leader carries on from the newest snapshot's time)
        # and HeadBucket (checked at start).
        Sid      = "ListSnapshots"
        Effect   = "Allow"
        Action   = ["s3:ListBucket"]
        Resource = [aws_s3_bucket.backup[0].arn]
      },
    ] : [],
    var.cloudwatch_enabled ? [
      {
        # The CloudWatch agent writes to this cluster's log groups, which
        # Terraform made; it creates none.
        Sid      = "ShipLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
        Resource = [for g in aws_cloudwatch_log_group.this : "${g.arn}:*"]
      },
    ] : [],
    var.ssm_parameters_kms_key_arn == null ? [] : [
      {
        Sid      = "DecryptClusterParameters"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [var.ssm_parameters_kms_key_arn]
        Condition = {
          StringEquals = { "kms:ViaService" = "ssm.${local.region}.${data.aws_partition.current.dns_suffix}" }
        }
      },
    ],
    # What the SSM agent needs for Session Manager shells, and no more:
    # AmazonSSMManagedInstanceCore would also allow reading every parameter
    # in the account.
    var.ssm_session_manager_enabled ? [
      {
        Sid    = "SessionManager"
        Effect = "Allow"
        Action = [
          "ssm:UpdateInstanceInformation",
          "ssmmessages:CreateControlChannel",
          "ssmmessages:CreateDataChannel",
          "ssmmessages:OpenControlChannel",
          "ssmmessages:OpenDataChannel",
        ]
        Resource = "*"
      },
    ] : [],
  )
}

resource "aws_iam_role_policy" "node" {
  name = "quorumca-node"
  role = aws_iam_role.node.id

  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = local.node_policy_statements
  })
}

resource "aws_iam_instance_profile" "node" {
  name = "${var.name}-node"
  path = var.iam_role_path
  role = aws_iam_role.node.name

  tags = local.tags
}

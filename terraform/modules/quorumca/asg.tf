module "user_data" {
  source = "./modules/user-data"

  cluster_name        = var.name
  cluster_tag_key     = local.cluster_tag_key
  region              = local.region
  ports               = local.ports
  http_enabled        = var.http_listener_enabled
  proxy_protocol_from = local.lb_subnet_cidrs
  bootstrap_expect    = var.instance_count
  voters              = local.voters
  dead_server_cleanup = var.dead_server_cleanup
  cluster_ca_key_arn  = aws_kms_key.this["cluster-ca"].arn
  issuing_key_arn     = aws_kms_key.this[local.issuing_key_names[var.issuing_key_generation_in_use - 1]].arn
  base_url            = local.revocation_base_url
  signer_rate         = local.signer_rate
  signer_burst        = local.signer_burst
  extra_config        = var.extra_config
  parameter_prefix    = local.ssm_parameter_prefix
  parameters          = local.ssm_parameters
}

resource "aws_launch_template" "node" {
  name        = "${var.name}-node"
  description = "quorumca servers of ${var.name}"

  image_id      = var.ami_id
  instance_type = var.instance_type
  user_data     = base64encode(module.user_data.user_data)

  # A server that cannot start shuts itself down (see the user data): the
  # instance is then terminated and the group launches a replacement.
  instance_initiated_shutdown_behavior = "terminate"
  update_default_version               = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.node.arn
  }

  vpc_security_group_ids = concat([aws_security_group.node.id], var.additional_security_group_ids)

  # IMDSv2 only, and one hop: containers on the host cannot borrow the role.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = data.aws_ami.node.root_device_name

    ebs {
      volume_size           = var.root_volume_size
      volume_type           = "gp3"
      encrypted             = "true"
      kms_key_id            = var.ebs_kms_key_arn
      delete_on_termination = "true"
    }
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.tags, { Name = "${var.name}-root" })
  }

  tags = local.tags

  lifecycle {
    precondition {
      # EC2 refuses user data over 16 KiB (before base64 encoding).
      condition     = length(module.user_data.user_data) <= 16384
      error_message = "The rendered user data exceeds 16 KiB: shorten extra_config."
    }
  }
}

resource "aws_autoscaling_group" "this" {
  name                = var.name
  min_size            = var.instance_count
  max_size            = var.instance_count
  desired_capacity    = var.instance_count
  vpc_zone_identifier = var.subnet_ids
  target_group_arns   = [for tg in aws_lb_target_group.this : tg.arn]

  health_check_type         = var.health_check_type
  health_check_grace_period = var.health_check_grace_period
  default_instance_warmup   = var.instance_warmup

  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }

  # Data volumes are bound to their zones: when a zone cannot take an
  # instance, launching it elsewhere would only start a server without a
  # volume. The group waits for the zone instead.
  availability_zone_distribution {
    capacity_distribution_strategy = "balanced-only"
  }

  # Replacements (health checks, rebalancing): terminate first, one at a time.
  instance_maintenance_policy {
    min_healthy_percentage = local.min_healthy_percentage
    max_healthy_percentage = 100
  }

  # A new launch template (AMI, configuration) rolls the servers one at a
  # time, waiting instance_warmup after each.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = local.min_healthy_percentage
      max_healthy_percentage = 100
      skip_matching          = true
    }
  }

  tag {
    key                 = "Name"
    value               = var.name
    propagate_at_launch = true
  }

  dynamic "tag" {
    for_each = { for k, v in local.tags : k => v if k != "Name" }

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  # What a server needs at boot: its role's permissions, the key policies
  # that name the role, and the volumes it claims.
  depends_on = [aws_iam_role_policy.node, aws_kms_key.this, aws_ebs_volume.data]
}

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
  api_server_names    = local.api_server_names
  api_certificate_ttl = var.api_certificate_ttl
  signer_rate         = local.signer_rate
  signer_burst        = local.signer_burst
  extra_config        = var.extra_config
  acme = {
    perspectives = var.acme_perspectives
    resolvers    = var.acme_resolvers
  }
  parameter_prefix = local.ssm_parameter_prefix
  parameters       = local.ssm_parameters
  snapshot         = local.snapshot
  cloudwatch = var.cloudwatch_enabled ? {
    audit_log_group   = aws_cloudwatch_log_group.this["audit"].name
    server_log_group  = aws_cloudwatch_log_group.this["server"].name
    metrics_log_group = aws_cloudwatch_log_group.this["metrics"].name
    namespace         = local.metrics_namespace
  } : null
  lifecycle_hooks = {
    asg_name                    = var.name
    launch_hook                 = local.launch_hook
    termination_hook            = local.termination_hook
    ready_stable_seconds        = var.ready_stable_seconds
    launch_timeout_seconds      = var.launch_timeout
    termination_timeout_seconds = var.termination_timeout
  }
}

locals {
  launch_hook      = "${var.name}-launch"
  termination_hook = "${var.name}-termination"
}

resource "aws_launch_template" "node" {
  name        = "${var.name}-node"
  description = "quorumca servers of ${var.name}"

  image_id      = var.ami_id
  instance_type = var.instance_type
  # Compressed (cloud-init reads gzip), to stay within EC2's 16 KiB.
  user_data = base64gzip(module.user_data.user_data)

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
      # EC2 refuses user data over 16 KiB before base64 encoding (4 bytes
      # for every 3).
      condition     = length(base64gzip(module.user_data.user_data)) <= 16384 / 3 * 4
      error_message = "The rendered user data exceeds 16 KiB compressed: shorten extra_config."
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

  # EC2 only (see the variable): readiness gates the launch hook instead.
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

  # A new server is in service only once it completes this hook, after its
  # /v1/ready stayed 200 for ready_stable_seconds; past the timeout it is
  # abandoned (terminated). In initial_lifecycle_hook so that the first
  # servers are held too.
  initial_lifecycle_hook {
    name                 = local.launch_hook
    lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"
    default_result       = "ABANDON"
    heartbeat_timeout    = var.launch_timeout
  }

  # A server is terminated only once its watcher (quorumca-lifecycle) saw
  # the others hold a healthy quorum without it, stopped it, and saw them
  # healthy again; past the timeout, the group terminates it anyway.
  initial_lifecycle_hook {
    name                 = local.termination_hook
    lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
    default_result       = "CONTINUE"
    heartbeat_timeout    = var.termination_timeout
  }

  # Replacements (health checks, rebalancing): terminate first, one at a time.
  instance_maintenance_policy {
    min_healthy_percentage = local.min_healthy_percentage
    max_healthy_percentage = 100
  }

  # A new launch template (AMI, configuration) rolls the servers one at a
  # time: each replacement is in service once its launch hook completes,
  # then instance_warmup. A replacement abandoned (never ready), or more
  # than one server not ready for three minutes (the alarm), stops the
  # refresh and rolls the replaced servers back to the previous template.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = local.min_healthy_percentage
      max_healthy_percentage = 100
      skip_matching          = true
      auto_rollback          = true

      alarm_specification {
        alarms = [aws_cloudwatch_metric_alarm.rollout.alarm_name]
      }
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

# Alarms on the servers' readiness, as the load balancer sees it (its
# /v1/ready checks on the API target group): they notify the alert topic,
# and one of them stops a rolling update.

locals {
  ready_hosts_dimensions = {
    TargetGroup  = aws_lb_target_group.this["api"].arn_suffix
    LoadBalancer = aws_lb.this.arn_suffix
  }
}

# A rollout replaces one server at a time: more than one not ready for
# three minutes means a replacement (or the rest) is not coming back, and
# the instance refresh rolls back.
resource "aws_cloudwatch_metric_alarm" "rollout" {
  alarm_name          = "${var.name}-servers-not-ready"
  alarm_description   = "More than one quorumca server of ${var.name} has not been ready for 3 minutes. Stops and rolls back an instance refresh."
  namespace           = "AWS/NetworkELB"
  metric_name         = "HealthyHostCount"
  dimensions          = local.ready_hosts_dimensions
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "LessThanThreshold"
  threshold           = var.instance_count - 1
  treat_missing_data  = "breaching"
  alarm_actions       = [local.alert_topic_arn]
  ok_actions          = [local.alert_topic_arn]

  tags = local.tags
}

# Fewer ready servers than a quorum: the cluster is about to stop (or has
# stopped) issuing.
resource "aws_cloudwatch_metric_alarm" "below_quorum" {
  alarm_name          = "${var.name}-ready-servers-below-quorum"
  alarm_description   = "Fewer quorumca servers of ${var.name} are ready than a quorum (${floor(var.instance_count / 2) + 1} of ${var.instance_count}): issuance stops."
  namespace           = "AWS/NetworkELB"
  metric_name         = "HealthyHostCount"
  dimensions          = local.ready_hosts_dimensions
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = floor(var.instance_count / 2) + 1
  treat_missing_data  = "breaching"
  alarm_actions       = [local.alert_topic_arn]
  ok_actions          = [local.alert_topic_arn]

  tags = local.tags
}

# Alarms on quorumca's own metrics (cloudwatch_enabled): the agent publishes
# them to the namespace quorumca/<name> with one dimension, the cluster, so
# a statistic covers every server, authority and issuer at once.

locals {
  metric_alarms = merge(var.cloudwatch_enabled ? {
    crl-next-update = {
      description = "A stored CRL of ${var.name} reaches its nextUpdate within ${var.crl_alarm_seconds} s: CRL refreshes are failing (signer, quorum)."
      metric      = "quorumca_crl_next_update_seconds"
      statistic   = "Minimum"
      dimensions  = { cluster = var.name }
      period      = 300
      periods     = 1
      comparison  = "LessThanThreshold"
      threshold   = var.crl_alarm_seconds
      missing     = "missing"
    }
    issuer-expiry = {
      description = "An issuer or root certificate of ${var.name} expires within ${var.issuer_expiry_alarm_days} days: rotate the intermediate."
      metric      = "quorumca_ca_cert_expiry_seconds"
      statistic   = "Minimum"
      dimensions  = { cluster = var.name }
      period      = 3600
      periods     = 1
      comparison  = "LessThanThreshold"
      threshold   = var.issuer_expiry_alarm_days * 86400
      missing     = "missing"
    }
    # A server renews its API certificate two thirds through its life: with
    # a sixth left, renewals have failed for half the window (or a server
    # has none: the metric is 0).
    api-certificate-expiring = {
      description = "A server of ${var.name} has had no new API certificate for half its renewal window (or none at all): see its journal for \"API certificate not issued\"."
      metric      = "quorumca_api_certificate_expiry_seconds"
      statistic   = "Minimum"
      dimensions  = { cluster = var.name }
      period      = 300
      periods     = 1
      comparison  = "LessThanThreshold"
      threshold   = tonumber(trimsuffix(var.api_certificate_ttl, "h")) * 3600 / 6
      missing     = "missing"
    }
    # Refused for the signing budget: KMS throttled this cluster's Sign
    # calls past their retries, or a server's share of kms_sign_budget ran
    # out (answered 429 overloaded).
    signing-overloaded = {
      description = "quorumca ${var.name} refused requests for lack of signing capacity (KMS throttling or kms_sign_budget) for 5 minutes."
      metric      = "quorumca_operations_total"
      statistic   = "Sum"
      dimensions  = { cluster = var.name, outcome = "overloaded" }
      period      = 60
      periods     = 5
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      missing     = "notBreaching"
    }
    } : {},
    var.cloudwatch_enabled && var.backup_enabled ? {
      # No scheduled snapshot written for three intervals (at most a day).
      snapshots-missing = {
        description = "quorumca ${var.name} wrote no scheduled snapshot to the backup bucket for ${min(3 * local.snapshot_interval_seconds, 86400)} s."
        metric      = "quorumca_snapshots_total"
        statistic   = "Sum"
        dimensions  = { cluster = var.name, outcome = "ok" }
        period      = min(3 * local.snapshot_interval_seconds, 86400)
        periods     = 1
        comparison  = "LessThanThreshold"
        threshold   = 1
        missing     = "breaching"
      }
  } : {})
}

resource "aws_cloudwatch_metric_alarm" "metrics" {
  for_each = local.metric_alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = local.metrics_namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  period              = each.value.period
  evaluation_periods  = each.value.periods
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  treat_missing_data  = each.value.missing
  alarm_actions       = [local.alert_topic_arn]
  ok_actions          = [local.alert_topic_arn]

  tags = local.tags
}

# Leadership that keeps moving: the Raft term rose more than twice in 15
# minutes (an election each time; a rolling update makes one per leader
# replaced).
resource "aws_cloudwatch_metric_alarm" "leader_changes" {
  count = var.cloudwatch_enabled ? 1 : 0

  alarm_name          = "${var.name}-leader-changes"
  alarm_description   = "The Raft term of quorumca ${var.name} rose more than twice in 15 minutes: leadership keeps moving (network, overloaded servers, clock)."
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = [local.alert_topic_arn]
  ok_actions          = [local.alert_topic_arn]

  metric_query {
    id = "term"
    metric {
      namespace   = local.metrics_namespace
      metric_name = "quorumca_raft_term"
      dimensions  = { cluster = var.name }
      stat        = "Maximum"
      period      = 900
    }
  }

  metric_query {
    id          = "elections"
    expression  = "DIFF(term)"
    label       = "Raft term increase per 15 minutes"
    return_data = true
  }

  tags = local.tags
}

resource "aws_cloudwatch_dashboard" "this" {
  count = var.cloudwatch_enabled ? 1 : 0

  dashboard_name = "quorumca-${var.name}"
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title       = "Ready servers (load balancer)"
          region      = local.region
          stat        = "Minimum"
          period      = 60
          metrics     = [["AWS/NetworkELB", "HealthyHostCount", "TargetGroup", aws_lb_target_group.this["api"].arn_suffix, "LoadBalancer", aws_lb.this.arn_suffix]]
          annotations = { horizontal = [{ label = "quorum", value = floor(var.instance_count / 2) + 1 }] }
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title  = "Refusals for signing capacity, and all operations"
          region = local.region
          stat   = "Sum"
          period = 60
          metrics = [
            [local.metrics_namespace, "quorumca_operations_total", "cluster", var.name, "outcome", "ok"],
            [local.metrics_namespace, "quorumca_operations_total", "cluster", var.name, "outcome", "overloaded"],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 8, height = 6
        properties = {
          title   = "Raft term (elections)"
          region  = local.region
          stat    = "Maximum"
          period  = 300
          metrics = [[local.metrics_namespace, "quorumca_raft_term", "cluster", var.name]]
        }
      },
      {
        type = "metric", x = 8, y = 6, width = 8, height = 6
        properties = {
          title       = "Soonest CRL nextUpdate (s)"
          region      = local.region
          stat        = "Minimum"
          period      = 300
          metrics     = [[local.metrics_namespace, "quorumca_crl_next_update_seconds", "cluster", var.name]]
          annotations = { horizontal = [{ label = "alarm", value = var.crl_alarm_seconds }] }
        }
      },
      {
        type = "metric", x = 16, y = 6, width = 8, height = 6
        properties = {
          title   = "Soonest issuer or root expiry (s)"
          region  = local.region
          stat    = "Minimum"
          period  = 3600
          metrics = [[local.metrics_namespace, "quorumca_ca_cert_expiry_seconds", "cluster", var.name]]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 12, height = 6
        properties = {
          title  = "State size (bytes) and audit entries"
          region = local.region
          stat   = "Maximum"
          period = 300
          metrics = [
            [local.metrics_namespace, "quorumca_fsm_size_bytes", "cluster", var.name],
            [local.metrics_namespace, "quorumca_audit_entries", "cluster", var.name, { yAxis = "right" }],
          ]
        }
      },
      {
        type = "log", x = 12, y = 12, width = 12, height = 6
        properties = {
          title  = "Server errors"
          region = local.region
          query  = "SOURCE '/quorumca/${var.name}/server' | fields @timestamp, @message | filter level = 'ERROR' | sort @timestamp desc | limit 50"
        }
      },
    ]
  })
}

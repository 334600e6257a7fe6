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

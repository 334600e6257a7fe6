# Security alerts: a signing key's policy rewritten, a key disabled or
# scheduled for deletion. EventBridge sees these calls through CloudTrail
# (the account needs a trail that records management events in this
# region; an organization trail does).

resource "aws_sns_topic" "alerts" {
  count = var.alert_topic_arn == null ? 1 : 0

  # Not encrypted: EventBridge cannot publish to a topic under the AWS
  # managed SNS key, and the messages name keys and calls, not secrets.
  name = "${var.name}-alerts"
  tags = local.tags
}

resource "aws_sns_topic_policy" "alerts" {
  count = var.alert_topic_arn == null ? 1 : 0

  arn = aws_sns_topic.alerts[0].arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "EventBridgePublishes"
        Effect    = "Allow"
        Principal = { Service = "events.${data.aws_partition.current.dns_suffix}" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alerts[0].arn
        Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.key_changes.arn } }
      },
      {
        # alarms.tf: by name, since the alarms name the topic.
        Sid       = "CloudWatchAlarmsPublish"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.${data.aws_partition.current.dns_suffix}" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alerts[0].arn
        Condition = { ArnLike = { "aws:SourceArn" = "arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${var.name}-*" } }
      },
    ]
  })
}

locals {
  alert_topic_arn = var.alert_topic_arn != null ? var.alert_topic_arn : aws_sns_topic.alerts[0].arn
}

resource "aws_cloudwatch_event_rule" "key_changes" {
  name        = "${var.name}-signing-key-changes"
  description = "A quorumca signing key's policy rewritten, the key disabled or scheduled for deletion"

  # These calls take a key ID or a key ARN, never an alias: match both.
  event_pattern = jsonencode({
    source        = ["aws.kms"]
    "detail-type" = ["AWS API Call via CloudTrail"]
    detail = {
      eventSource       = ["kms.amazonaws.com"]
      eventName         = ["PutKeyPolicy", "DisableKey", "ScheduleKeyDeletion"]
      requestParameters = { keyId = flatten([for k in aws_kms_key.this : [k.arn, k.key_id]]) }
    }
  })

  tags = local.tags
}

resource "aws_cloudwatch_event_target" "key_changes" {
  rule = aws_cloudwatch_event_rule.key_changes.name
  arn  = local.alert_topic_arn
}

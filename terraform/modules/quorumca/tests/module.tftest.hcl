# Applies the module against a mocked AWS provider (no credentials, no
# network) and checks what the cluster's safety and reachability depend on:
# zones, load balancing, key policies, network exposure, storage and the
# server configuration written by the user data.

mock_provider "aws" {
  source = "./tests/mocks"
}

# The module reads its subnets back: three zones of one VPC.
override_data {
  target = data.aws_subnet.node[0]
  values = { availability_zone = "eu-west-1a", cidr_block = "10.40.0.0/20", vpc_id = "vpc-0123456789abcdef0" }
}

override_data {
  target = data.aws_subnet.node[1]
  values = { availability_zone = "eu-west-1b", cidr_block = "10.40.16.0/20", vpc_id = "vpc-0123456789abcdef0" }
}

override_data {
  target = data.aws_subnet.node[2]
  values = { availability_zone = "eu-west-1c", cidr_block = "10.40.32.0/20", vpc_id = "vpc-0123456789abcdef0" }
}

# Distinct IDs for the two security groups, so rules can be told apart.
override_resource {
  target = aws_security_group.node
  values = { id = "sg-0aaaaaaaaaaaaaaaa", arn = "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-0aaaaaaaaaaaaaaaa" }
}

override_resource {
  target = aws_security_group.lb
  values = { id = "sg-0bbbbbbbbbbbbbbbb", arn = "arn:aws:ec2:eu-west-1:123456789012:security-group/sg-0bbbbbbbbbbbbbbbb" }
}

variables {
  name                     = "quorumca"
  subnet_ids               = ["subnet-0a1a1a1a1a1a1a1a1", "subnet-0b2b2b2b2b2b2b2b2", "subnet-0c3c3c3c3c3c3c3c3"]
  ami_id                   = "ami-0123456789abcdef0"
  allowed_cidr_blocks      = ["10.40.0.0/16"]
  https_egress_cidr_blocks = ["10.40.0.0/16"]
  revocation_base_url      = "http://ca.quorumca.internal:8080"
  kms_key_administrators   = ["arn:aws:iam::123456789012:role/pki-admin"]
}

run "three_zones" {
  assert {
    condition     = length(output.data_volume_ids) == 3
    error_message = "Three servers need three data volumes."
  }

  assert {
    condition     = toset([for v in aws_ebs_volume.data : v.availability_zone]) == toset(["eu-west-1a", "eu-west-1b", "eu-west-1c"])
    error_message = "One data volume per availability zone."
  }

  assert {
    condition     = length(aws_autoscaling_group.this.vpc_zone_identifier) == 3
    error_message = "The auto-scaling group must span the three subnets."
  }

  assert {
    condition = (
      aws_autoscaling_group.this.min_size == 3 &&
      aws_autoscaling_group.this.max_size == 3 &&
      aws_autoscaling_group.this.desired_capacity == 3
    )
    error_message = "The group must hold exactly three servers."
  }

  assert {
    condition     = aws_autoscaling_group.this.availability_zone_distribution[0].capacity_distribution_strategy == "balanced-only"
    error_message = "Instances must not be launched outside their volumes' zones."
  }

  assert {
    condition = (
      aws_autoscaling_group.this.instance_maintenance_policy[0].min_healthy_percentage == 66 &&
      aws_autoscaling_group.this.instance_maintenance_policy[0].max_healthy_percentage == 100 &&
      aws_autoscaling_group.this.instance_refresh[0].preferences[0].min_healthy_percentage == 66
    )
    error_message = "Replacements must take one server of three at a time, terminating first."
  }
}

run "load_balancer" {
  assert {
    condition     = aws_lb.this.enable_deletion_protection
    error_message = "The load balancer is protected from deletion by default: every client and certificate points at it."
  }

  assert {
    condition     = aws_lb.this.load_balancer_type == "network" && aws_lb.this.internal
    error_message = "An internal network load balancer."
  }

  assert {
    condition = alltrue([for l in aws_lb_listener.this :
    l.protocol == "TCP" && l.certificate_arn == null && l.default_action[0].type == "forward"])
    error_message = "Listeners must pass TCP through (TLS ends on the servers)."
  }

  assert {
    condition = (
      aws_lb_listener.this["api"].port == 8443 &&
      aws_lb_listener.this["api"].default_action[0].target_group_arn == aws_lb_target_group.this["api"].arn
    )
    error_message = "Port 8443 must forward to the API target group."
  }

  assert {
    condition     = aws_lb_target_group.this["api"].port == 8443 && aws_lb_target_group.this["api"].protocol == "TCP"
    error_message = "The API target group must be TCP on 8443."
  }

  assert {
    condition = alltrue([for tg in aws_lb_target_group.this :
      tg.health_check[0].protocol == "HTTPS" &&
      tg.health_check[0].path == "/v1/ready" &&
      tg.health_check[0].port == "8443" &&
    tg.health_check[0].matcher == "200"])
    error_message = "Health checks must be HTTPS GET /v1/ready on the API port."
  }

  assert {
    condition = alltrue([for tg in aws_lb_target_group.this :
    tg.proxy_protocol_v2 && tg.preserve_client_ip == "false"])
    error_message = "Proxied connections must come from the balancer, with PROXY protocol v2."
  }

  assert {
    condition     = strcontains(module.user_data.user_data, "proxy_protocol_from = [\"10.40.0.0/20\",\"10.40.16.0/20\",\"10.40.32.0/20\"]")
    error_message = "The servers must trust PROXY headers from the balancer's subnets only."
  }

  assert {
    condition     = toset(aws_autoscaling_group.this.target_group_arns) == toset([for tg in aws_lb_target_group.this : tg.arn])
    error_message = "The servers must be registered in the target groups."
  }
}

run "kms_keys" {
  assert {
    condition = alltrue([for k in aws_kms_key.this :
    k.customer_master_key_spec == "ECC_NIST_P256" && k.key_usage == "SIGN_VERIFY"])
    error_message = "Keys must be ECC_NIST_P256 for SIGN_VERIFY."
  }

  assert {
    condition     = length(aws_kms_key.this) == 2
    error_message = "An issuing key and a cluster CA key."
  }

  # The servers' role: exactly Sign, GetPublicKey and DescribeKey.
  assert {
    condition = alltrue([for k in aws_kms_key.this : anytrue([
      for s in jsondecode(k.policy).Statement :
      s.Effect == "Allow" &&
      flatten([s.Principal.AWS]) == [output.iam_role_arn] &&
      toset(flatten([s.Action])) == toset(["kms:Sign", "kms:GetPublicKey", "kms:DescribeKey"])
    ])])
    error_message = "The key policies must allow the servers' role exactly kms:Sign, kms:GetPublicKey and kms:DescribeKey."
  }

  # No Allow lets anyone else sign, directly, through a wildcard, or by granting.
  assert {
    condition = alltrue(flatten([for k in aws_kms_key.this : [
      for s in jsondecode(k.policy).Statement : [
        for a in flatten([s.Action]) :
        flatten([s.Principal.AWS]) == [output.iam_role_arn] || (!strcontains(a, "*") && !contains(["kms:Sign", "kms:CreateGrant", "kms:GetPublicKey"], a))
      ] if s.Effect == "Allow"
    ]]))
    error_message = "Only the servers' role may sign; administration must be listed action by action."
  }

  # And whatever else allows it, a Deny refuses signing to every principal
  # but the servers' role, and grants to everyone.
  assert {
    condition = alltrue([for k in aws_kms_key.this : anytrue([
      for s in jsondecode(k.policy).Statement :
      s.Effect == "Deny" && s.Principal.AWS == "*" && flatten([s.Action]) == ["kms:Sign"] &&
      flatten([try(s.Condition.ArnNotEquals["aws:PrincipalArn"], [])]) == [output.iam_role_arn]
    ])])
    error_message = "The key policies must deny kms:Sign to every principal but the servers' role."
  }

  assert {
    condition = alltrue([for k in aws_kms_key.this : anytrue([
      for s in jsondecode(k.policy).Statement :
      s.Effect == "Deny" && s.Principal.AWS == "*" && flatten([s.Action]) == ["kms:CreateGrant"] && try(s.Condition, null) == null
    ])])
    error_message = "The key policies must deny kms:CreateGrant to everyone."
  }

  # The administrators named, never the account root (which would let any
  # IAM policy in the account grant use of the keys).
  assert {
    condition = alltrue([for k in aws_kms_key.this : anytrue([
      for s in jsondecode(k.policy).Statement :
      s.Effect == "Allow" && s.Principal.AWS == ["arn:aws:iam::123456789012:role/pki-admin"] &&
      contains(s.Action, "kms:PutKeyPolicy") && contains(s.Action, "kms:ScheduleKeyDeletion")
    ])])
    error_message = "The administrators named in kms_key_administrators must keep administration of the keys."
  }

  assert {
    condition = !anytrue(flatten([for k in aws_kms_key.this : [
      for s in jsondecode(k.policy).Statement : strcontains(jsonencode(s.Principal), ":root")
    ]]))
    error_message = "No key policy statement may name the account root."
  }

  # Without an endpoint, no endpoint condition; single-Region keys.
  assert {
    condition = alltrue([for k in aws_kms_key.this :
    !strcontains(k.policy, "aws:SourceVpce") && !k.multi_region])
    error_message = "Without kms_vpc_endpoint_id no policy names an endpoint; keys are single-Region unless asked."
  }

  assert {
    condition     = strcontains(module.user_data.user_data, "key        = \"awskms:${output.kms_key_arn}\"")
    error_message = "The authority must name the issuing key by its ARN."
  }

  assert {
    condition     = strcontains(module.user_data.user_data, "ca_key              = \"awskms:${output.cluster_ca_kms_key_arn}\"")
    error_message = "The cluster CA key must be the module's KMS key."
  }
}

run "kms_through_the_endpoint" {
  variables {
    kms_vpc_endpoint_id = "vpce-0123456789abcdef0"
    kms_multi_region    = true
  }

  assert {
    condition = alltrue([for k in aws_kms_key.this : anytrue([
      for s in jsondecode(k.policy).Statement :
      s.Effect == "Deny" && s.Principal.AWS == "*" && flatten([s.Action]) == ["kms:Sign"] &&
      try(s.Condition.StringNotEquals["aws:SourceVpce"], "") == "vpce-0123456789abcdef0"
    ])])
    error_message = "With kms_vpc_endpoint_id, the keys must refuse kms:Sign that does not come through the endpoint."
  }

  assert {
    condition     = alltrue([for k in aws_kms_key.this : k.multi_region])
    error_message = "kms_multi_region must make the keys multi-Region."
  }
}

run "alerts" {
  assert {
    condition     = length(aws_sns_topic.alerts) == 1 && output.alert_topic_arn == aws_sns_topic.alerts[0].arn
    error_message = "Without alert_topic_arn the module makes a topic and outputs it."
  }

  assert {
    condition = (
      jsondecode(aws_cloudwatch_event_rule.key_changes.event_pattern).source == ["aws.kms"] &&
      toset(jsondecode(aws_cloudwatch_event_rule.key_changes.event_pattern).detail.eventName) == toset(["PutKeyPolicy", "DisableKey", "ScheduleKeyDeletion"])
    )
    error_message = "The rule must catch PutKeyPolicy, DisableKey and ScheduleKeyDeletion."
  }

  assert {
    condition = alltrue(flatten([for k in aws_kms_key.this : [
      contains(jsondecode(aws_cloudwatch_event_rule.key_changes.event_pattern).detail.requestParameters.keyId, k.arn),
      contains(jsondecode(aws_cloudwatch_event_rule.key_changes.event_pattern).detail.requestParameters.keyId, k.key_id),
    ]]))
    error_message = "The rule must match both signing keys, by ARN and by key ID."
  }

  assert {
    condition     = aws_cloudwatch_event_target.key_changes.arn == output.alert_topic_arn
    error_message = "The rule must publish to the alert topic."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_sns_topic_policy.alerts[0].policy).Statement :
      s.Effect == "Allow" && s.Principal.Service == "events.amazonaws.com" && s.Action == "sns:Publish" &&
    try(s.Condition.ArnEquals["aws:SourceArn"], "") == aws_cloudwatch_event_rule.key_changes.arn])
    error_message = "Only this rule may publish to the topic through EventBridge."
  }
}

run "issuing_key_generations" {
  variables {
    issuing_key_generations = 3
  }

  override_resource {
    target = aws_kms_key.this["issuing-2"]
    values = { arn = "arn:aws:kms:eu-west-1:123456789012:key/22222222-2222-4222-8222-222222222222", key_id = "22222222-2222-4222-8222-222222222222" }
  }

  override_resource {
    target = aws_kms_key.this["issuing-3"]
    values = { arn = "arn:aws:kms:eu-west-1:123456789012:key/33333333-3333-4333-8333-333333333333", key_id = "33333333-3333-4333-8333-333333333333" }
  }

  assert {
    condition     = toset(keys(aws_kms_key.this)) == toset(["issuing", "issuing-2", "issuing-3", "cluster-ca"])
    error_message = "Each generation of the issuing key is a key of the module."
  }

  assert {
    condition     = length(distinct([for k in aws_kms_key.this : k.policy])) == 1
    error_message = "Every generation is under the same confined policy."
  }

  assert {
    condition     = output.issuing_key_uris == ["awskms:${aws_kms_key.this["issuing"].arn}", "awskms:arn:aws:kms:eu-west-1:123456789012:key/22222222-2222-4222-8222-222222222222", "awskms:arn:aws:kms:eu-west-1:123456789012:key/33333333-3333-4333-8333-333333333333"]
    error_message = "issuing_key_uris lists the generations, newest last."
  }

  assert {
    condition = alltrue([for id in ["22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333"] :
    contains(jsondecode(aws_cloudwatch_event_rule.key_changes.event_pattern).detail.requestParameters.keyId, id)])
    error_message = "Alerts cover every generation."
  }

  # The servers keep naming the first generation until an admin imports
  # another: generations change no server's configuration.
  assert {
    condition     = strcontains(module.user_data.user_data, "key        = \"awskms:${aws_kms_key.this["issuing"].arn}\"")
    error_message = "The authority in node.hcl stays on the first generation."
  }
}

run "issuing_key_generation_in_use" {
  variables {
    issuing_key_generations       = 2
    issuing_key_generation_in_use = 2
  }

  override_resource {
    target = aws_kms_key.this["issuing-2"]
    values = { arn = "arn:aws:kms:eu-west-1:123456789012:key/22222222-2222-4222-8222-222222222222", key_id = "22222222-2222-4222-8222-222222222222" }
  }

  assert {
    condition     = strcontains(module.user_data.user_data, "key        = \"awskms:arn:aws:kms:eu-west-1:123456789012:key/22222222-2222-4222-8222-222222222222\"")
    error_message = "A cluster bootstrapped from scratch must pair the stored chain with the generation in use."
  }
}

run "alerts_to_an_existing_topic" {
  variables {
    alert_topic_arn = "arn:aws:sns:eu-west-1:123456789012:security-team"
  }

  assert {
    condition     = length(aws_sns_topic.alerts) == 0 && aws_cloudwatch_event_target.key_changes.arn == "arn:aws:sns:eu-west-1:123456789012:security-team"
    error_message = "With alert_topic_arn, alerts go to that topic and no other is made."
  }
}

# Rollouts keep the quorum: the servers' readiness gates the group through
# lifecycle hooks, a refresh rolls back on an alarm, and the load balancer's
# checks never replace servers.
run "rollouts" {
  assert {
    condition     = aws_autoscaling_group.this.health_check_type == "EC2"
    error_message = "The group must not replace servers on the balancer's readiness checks."
  }

  assert {
    condition = anytrue([for h in aws_autoscaling_group.this.initial_lifecycle_hook :
      h.name == "quorumca-launch" && h.lifecycle_transition == "autoscaling:EC2_INSTANCE_LAUNCHING" &&
    h.default_result == "ABANDON" && h.heartbeat_timeout == 1800])
    error_message = "A launch hook that abandons a server that never completes it, from the first servers on."
  }

  assert {
    condition = anytrue([for h in aws_autoscaling_group.this.initial_lifecycle_hook :
    h.name == "quorumca-termination" && h.lifecycle_transition == "autoscaling:EC2_INSTANCE_TERMINATING" && h.heartbeat_timeout == 900])
    error_message = "A termination hook that holds a server until the others hold a quorum without it."
  }

  assert {
    condition = (
      aws_autoscaling_group.this.instance_refresh[0].preferences[0].auto_rollback &&
      aws_autoscaling_group.this.instance_refresh[0].preferences[0].alarm_specification[0].alarms == tolist([aws_cloudwatch_metric_alarm.rollout.alarm_name])
    )
    error_message = "An instance refresh must roll back on the rollout alarm."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.rollout.metric_name == "HealthyHostCount" &&
      aws_cloudwatch_metric_alarm.rollout.comparison_operator == "LessThanThreshold" &&
      aws_cloudwatch_metric_alarm.rollout.threshold == 2 &&
      aws_cloudwatch_metric_alarm.rollout.dimensions.TargetGroup == aws_lb_target_group.this["api"].arn_suffix
    )
    error_message = "The rollout alarm fires when more than one of three servers is not ready."
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.below_quorum.threshold == 2 && aws_cloudwatch_metric_alarm.below_quorum.alarm_actions == toset([aws_sns_topic.alerts[0].arn])
    error_message = "An alarm, to the alert topic, when fewer servers than a quorum are ready."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_sns_topic_policy.alerts[0].policy).Statement :
    s.Principal.Service == "cloudwatch.amazonaws.com" && try(s.Condition.ArnLike["aws:SourceArn"], "") == "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:quorumca-*"])
    error_message = "The alarms must be allowed to publish to the alert topic, and only this cluster's."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_iam_role_policy.node.policy).Statement :
      toset(s.Action) == toset(["ec2:CreateTags", "ec2:DeleteTags"]) &&
      try(s.Condition["ForAllValues:StringEquals"]["aws:TagKeys"], []) == ["quorumca-draining"] &&
    try(s.Condition.StringEquals["aws:ResourceTag/quorumca-cluster"], "") == "quorumca"])
    error_message = "The servers may set the draining tag, and no other, on their own cluster's instances only."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_iam_role_policy.node.policy).Statement :
      s.Action == ["ec2:CreateTags"] && s.Resource == ["arn:aws:ec2:eu-west-1:123456789012:volume/*"] &&
      try(s.Condition["ForAllValues:StringEquals"]["aws:TagKeys"], []) == ["quorumca-used"] &&
    try(s.Condition.StringEquals["aws:ResourceTag/quorumca-cluster"], "") == "quorumca"])
    error_message = "The servers may mark their own cluster's volumes as used, with that tag only."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_iam_role_policy.node.policy).Statement :
      toset(s.Action) == toset(["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"]) &&
    s.Resource == ["arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/quorumca"]])
    error_message = "The servers may complete the lifecycle hooks of their own group only."
  }

  assert {
    condition = alltrue([for line in [
      "quorumca operator wait-ready -addr \"https://$PRIVATE_DNS:8443\"",
      "-stable 60s -no-authority-ok",
      "--lifecycle-hook-name 'quorumca-launch'",
      "complete ABANDON",
      "complete CONTINUE",
      "systemctl enable --now quorumca.service quorumca-lifecycle.service quorumca-gossip-key.timer",
      "ExecReload=/bin/kill -HUP $MAINPID",
      "OnUnitActiveSec=5min",
      "autoscaling/target-lifecycle-state",
      "quorumca operator wait-healthy",
      "HOOK='quorumca-termination'",
      "record-lifecycle-action-heartbeat",
      "Terminating:Wait",
      "--tags \"Key=$DRAINING,Value=true\"",
      "predecessor_leaving",
      "describe-auto-scaling-instances",
      "wait_healthy 10s -down",
      "Key=quorumca-used,Value=true",
    ] : strcontains(module.user_data.user_data, line)])
    error_message = "The servers complete the launch hook once ready, and the termination hook once the others hold a quorum."
  }
}

# Logs, metrics and alarms: the audit log and the journal in encrypted log
# groups the servers may only write to, quorumca's metrics through the
# CloudWatch agent, alarms on what an operator must act on, a dashboard.
run "observability" {
  assert {
    condition = (
      aws_cloudwatch_log_group.this["audit"].name == "/quorumca/quorumca/audit" &&
      aws_cloudwatch_log_group.this["audit"].retention_in_days == 731 &&
      aws_cloudwatch_log_group.this["server"].retention_in_days == 30 &&
      alltrue([for g in aws_cloudwatch_log_group.this : g.kms_key_id == aws_kms_key.logs[0].arn])
    )
    error_message = "Log groups for the audit log (two years), the journal and the metrics, encrypted with the module's logs key."
  }

  assert {
    condition = alltrue([for st in jsondecode(aws_kms_key.logs[0].policy).Statement :
      st.Principal == { AWS = ["arn:aws:iam::123456789012:role/pki-admin"] } ||
      (st.Principal == { Service = "logs.eu-west-1.amazonaws.com" } &&
    try(st.Condition.ArnLike["kms:EncryptionContext:aws:logs:arn"], "") == "arn:aws:logs:eu-west-1:123456789012:log-group:/quorumca/quorumca/*")])
    error_message = "The logs key: the administrators manage it, CloudWatch Logs uses it for this cluster's groups only."
  }

  assert {
    condition = anytrue([for st in jsondecode(aws_iam_role_policy.node.policy).Statement :
      st.Sid == "ShipLogs" && !contains(st.Action, "logs:CreateLogGroup") && length(st.Resource) == 3 &&
    alltrue([for r in flatten([st.Resource]) : startswith(r, "arn:aws:logs:eu-west-1:123456789012:log-group:") && endswith(r, ":*")])])
    error_message = "The servers may write streams of the cluster's log groups, and create no group."
  }

  assert {
    condition = alltrue([
      jsondecode(module.user_data.cloudwatch_agent_config).logs.logs_collected.files.collect_list[0].file_path == "/var/lib/quorumca/audit.jsonl",
      jsondecode(module.user_data.cloudwatch_agent_config).logs.logs_collected.files.collect_list[0].log_group_name == "/quorumca/quorumca/audit",
      jsondecode(module.user_data.cloudwatch_agent_config).logs.metrics_collected.prometheus.emf_processor.metric_namespace == "quorumca/quorumca",
      yamldecode(module.user_data.prometheus_config).scrape_configs[0].metrics_path == "/v1/metrics",
      yamldecode(module.user_data.prometheus_config).scrape_configs[0].static_configs[0].targets == ["127.0.0.1:9090"],
      strcontains(module.user_data.user_data, "amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s"),
      strcontains(module.user_data.node_config, "file = \"/var/lib/quorumca/audit.jsonl\""),
    ])
    error_message = "The agent ships the audit file (on the data volume) and scrapes the admin listener's metrics."
  }

  assert {
    condition = alltrue([for name, a in aws_cloudwatch_metric_alarm.metrics :
      a.namespace == "quorumca/quorumca" && a.dimensions.cluster == "quorumca" && a.alarm_actions == toset([aws_sns_topic.alerts[0].arn])
    ]) && toset(keys(aws_cloudwatch_metric_alarm.metrics)) == toset(["api-certificate-expiring", "crl-next-update", "issuer-expiry", "signing-overloaded", "snapshots-missing"])
    error_message = "Alarms on CRL freshness, issuer expiry, signing capacity and backups, to the alert topic."
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.metrics["issuer-expiry"].threshold == 2592000 && aws_cloudwatch_metric_alarm.metrics["crl-next-update"].threshold == 21600 && aws_cloudwatch_metric_alarm.metrics["api-certificate-expiring"].threshold == 14400
    error_message = "Issuer expiry alarms 30 days ahead, CRLs 6 hours before their nextUpdate."
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.leader_changes) == 1 && length(jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets) >= 6
    error_message = "An alarm on leader changes, and a dashboard."
  }
}

run "without_cloudwatch" {
  variables {
    cloudwatch_enabled = false
  }

  assert {
    condition     = length(aws_cloudwatch_log_group.this) == 0 && length(aws_kms_key.logs) == 0 && length(aws_cloudwatch_metric_alarm.metrics) == 0 && length(aws_cloudwatch_dashboard.this) == 0
    error_message = "Nothing shipped, no log groups, key, metric alarms or dashboard."
  }

  assert {
    condition = (
      !strcontains(module.user_data.user_data, "amazon-cloudwatch-agent") &&
      !anytrue([for st in jsondecode(aws_iam_role_policy.node.policy).Statement : st.Sid == "ShipLogs"]) &&
      length(aws_cloudwatch_metric_alarm.below_quorum.alarm_actions) == 1
    )
    error_message = "No agent and no log permissions; the load balancer's alarms stay."
  }
}

run "logs_under_a_key_of_yours" {
  variables {
    logs_kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/44444444-4444-4444-8444-444444444444"
  }

  assert {
    condition     = length(aws_kms_key.logs) == 0 && alltrue([for g in aws_cloudwatch_log_group.this : g.kms_key_id == "arn:aws:kms:eu-west-1:123456789012:key/44444444-4444-4444-8444-444444444444"])
    error_message = "A key of the operator's encrypts the log groups, and the module makes none."
  }
}

# Backups: the leader's snapshots to a locked, versioned, encrypted bucket
# the servers can only add to; daily volume recovery points.
run "backups" {
  variables {
    backup_copy_vault_arn = "arn:aws:backup:eu-central-1:123456789012:backup-vault:quorumca-copy"
  }

  assert {
    condition = (
      aws_s3_bucket.backup[0].object_lock_enabled &&
      aws_s3_bucket_versioning.backup[0].versioning_configuration[0].status == "Enabled" &&
      aws_s3_bucket_object_lock_configuration.backup[0].rule[0].default_retention[0].mode == "GOVERNANCE" &&
      aws_s3_bucket_object_lock_configuration.backup[0].rule[0].default_retention[0].days == 7 &&
      one(aws_s3_bucket_server_side_encryption_configuration.backup[0].rule).apply_server_side_encryption_by_default[0].kms_master_key_id == aws_kms_key.backup[0].arn &&
      aws_s3_bucket_public_access_block.backup[0].restrict_public_buckets &&
      aws_s3_bucket_lifecycle_configuration.backup[0].rule[0].expiration[0].days == 35
    )
    error_message = "The backup bucket: versioned, Object Lock for 7 days, SSE-KMS under the backup key, private, snapshots expire after 35 days."
  }

  assert {
    condition = alltrue([for st in jsondecode(aws_s3_bucket_policy.backup[0].policy).Statement : st.Effect == "Deny"]) && anytrue([for st in jsondecode(aws_s3_bucket_policy.backup[0].policy).Statement :
    try(st.Condition.Bool["aws:SecureTransport"], "") == "false"])
    error_message = "The bucket refuses plain HTTP and objects under another key."
  }

  assert {
    condition = alltrue([for st in jsondecode(aws_iam_role_policy.node.policy).Statement :
      !anytrue([for a in flatten([st.Action]) : contains(["s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutBucketPolicy"], a)])
      ]) && anytrue([for st in jsondecode(aws_iam_role_policy.node.policy).Statement :
    st.Action == ["s3:PutObject"] && st.Resource == ["${aws_s3_bucket.backup[0].arn}/quorumca/*"]])
    error_message = "The servers may add snapshots under the cluster's prefix, and neither read nor delete any."
  }

  assert {
    condition = alltrue([for st in jsondecode(aws_kms_key.backup[0].policy).Statement :
      st.Sid == "Administration" || try(st.Condition.StringEquals["kms:ViaService"], "") == "s3.eu-west-1.amazonaws.com"
    ])
    error_message = "The backup key is used through S3 only."
  }

  assert {
    condition = (
      strcontains(module.user_data.node_config, "interval    = \"1h\"") &&
      strcontains(module.user_data.node_config, "destination = \"s3://${aws_s3_bucket.backup[0].id}/quorumca?region=eu-west-1&sse=aws:kms&kms_key_id=${aws_kms_key.backup[0].arn}\"")
    )
    error_message = "node.hcl names the bucket, the cluster's prefix and the backup key."
  }

  assert {
    condition = (
      one(aws_backup_plan.this[0].rule).lifecycle[0].delete_after == 35 &&
      one(one(aws_backup_plan.this[0].rule).copy_action).destination_vault_arn == "arn:aws:backup:eu-central-1:123456789012:backup-vault:quorumca-copy" &&
      length(aws_backup_selection.this[0].resources) == 3
    )
    error_message = "AWS Backup takes every data volume daily, kept 35 days, copied to the other region's vault."
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.metrics["snapshots-missing"].period == 10800 && aws_cloudwatch_metric_alarm.metrics["snapshots-missing"].dimensions.outcome == "ok"
    error_message = "An alarm when no snapshot was written for three intervals."
  }
}

# A cluster restored from this one's snapshots (same account and region)
# signs with the issuing keys its restored authority names, never with the
# cluster CA key.
run "restore_signer" {
  variables {
    restore_signer_role_arns = ["arn:aws:iam::123456789012:role/quorumca-restored-node"]
  }

  assert {
    condition = anytrue([for st in jsondecode(aws_kms_key.this["issuing"].policy).Statement :
      st.Sid == "ServersSign" && contains(flatten([try(st.Principal.AWS, [])]), "arn:aws:iam::123456789012:role/quorumca-restored-node")]) && anytrue([for st in jsondecode(aws_kms_key.this["issuing"].policy).Statement :
    st.Sid == "NobodyElseSigns" && contains(flatten([try(st.Condition.ArnNotEquals["aws:PrincipalArn"], [])]), "arn:aws:iam::123456789012:role/quorumca-restored-node")])
    error_message = "The restored cluster's role may sign with the issuing key."
  }

  assert {
    condition = alltrue([for st in jsondecode(aws_kms_key.this["cluster-ca"].policy).Statement :
    !strcontains(jsonencode(st), "quorumca-restored-node")])
    error_message = "Node identity is never shared: the cluster CA key signs for this cluster's servers only."
  }
}

# Volumes under a customer managed key: the servers may attach them (EC2's
# grant, through EC2 only), and the module says what the key's policy needs.
run "customer_managed_ebs_key" {
  variables {
    ebs_kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/55555555-5555-4555-8555-555555555555"
  }

  assert {
    condition = alltrue([for st in jsondecode(aws_iam_role_policy.node.policy).Statement :
      st.Resource == ["arn:aws:kms:eu-west-1:123456789012:key/55555555-5555-4555-8555-555555555555"] &&
      st.Condition.StringEquals["kms:ViaService"] == "ec2.eu-west-1.amazonaws.com" && st.Condition.Bool["kms:GrantIsForAWSResource"] == "true"
    if anytrue([for a in flatten([st.Action]) : startswith(a, "kms:")])])
    error_message = "The role's KMS rights are on the EBS key only, through EC2, for AWS resources."
  }

  assert {
    condition = (
      length(jsondecode(output.ebs_key_policy_statements)) == 3 &&
      jsondecode(output.ebs_key_policy_statements)[0].Principal.AWS == "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling" &&
      jsondecode(output.ebs_key_policy_statements)[2].Principal.AWS == output.iam_role_arn &&
      alltrue([for d in aws_ebs_volume.data : d.kms_key_id == "arn:aws:kms:eu-west-1:123456789012:key/55555555-5555-4555-8555-555555555555"])
    )
    error_message = "The key policy statements for the group's service-linked role and the servers, and the volumes under the key."
  }
}

run "without_backups" {
  variables {
    backup_enabled = false
  }

  assert {
    condition = (
      length(aws_s3_bucket.backup) == 0 && length(aws_backup_plan.this) == 0 && length(aws_kms_key.backup) == 0 &&
      !strcontains(module.user_data.node_config, "snapshot {") && !contains(keys(aws_cloudwatch_metric_alarm.metrics), "snapshots-missing")
    )
    error_message = "No bucket, plan, key, snapshot block or alarm."
  }
}

run "iam" {
  assert {
    condition = anytrue([for s in jsondecode(aws_iam_role_policy.node.policy).Statement :
    contains(s.Action, "ec2:DescribeInstances")])
    error_message = "Cloud auto-join needs ec2:DescribeInstances."
  }

  assert {
    condition = alltrue([for s in jsondecode(aws_iam_role_policy.node.policy).Statement :
    s.Condition.StringEquals["aws:ResourceTag/quorumca-cluster"] == "quorumca" if contains(s.Action, "ec2:AttachVolume")])
    error_message = "Servers may attach only this cluster's volumes to this cluster's instances."
  }

  # Key use comes from the key policies, and the servers create no keys:
  # a server that could would choose the new key's policy.
  assert {
    condition = alltrue([for s in jsondecode(aws_iam_role_policy.node.policy).Statement :
    !anytrue([for a in flatten([s.Action]) : startswith(a, "kms:")])])
    error_message = "The role's own policy grants nothing on KMS."
  }

  assert {
    condition     = jsondecode(aws_iam_role.node.assume_role_policy).Statement[0].Principal.Service == "ec2.amazonaws.com"
    error_message = "Only EC2 may assume the servers' role."
  }
}

run "security_groups" {
  # Between the servers: Raft, gossip (TCP and UDP), forwarding on the API port.
  assert {
    condition = toset([for r in aws_vpc_security_group_ingress_rule.node_from_node :
      "${r.ip_protocol}/${r.from_port}-${r.to_port}<${r.referenced_security_group_id}"]) == toset([
      "tcp/8300-8300<sg-0aaaaaaaaaaaaaaaa",
      "tcp/8301-8301<sg-0aaaaaaaaaaaaaaaa",
      "udp/8301-8301<sg-0aaaaaaaaaaaaaaaa",
      "tcp/8443-8443<sg-0aaaaaaaaaaaaaaaa",
    ])
    error_message = "Raft, gossip and forwarding must be open between the servers only."
  }

  # From the balancer (traffic and health checks): the API and HTTP ports.
  assert {
    condition = toset([for r in aws_vpc_security_group_ingress_rule.node_from_lb :
      "${r.ip_protocol}/${r.from_port}<${r.referenced_security_group_id}"]) == toset([
      "tcp/8443<sg-0bbbbbbbbbbbbbbbb",
      "tcp/8080<sg-0bbbbbbbbbbbbbbbb",
    ])
    error_message = "The servers must accept the API and HTTP ports from the balancer only."
  }

  # Client networks reach the balancer, never the servers directly.
  assert {
    condition = toset([for r in aws_vpc_security_group_ingress_rule.lb :
    "${r.from_port}<${r.cidr_ipv4}"]) == toset(["8443<10.40.0.0/16", "8080<10.40.0.0/16"])
    error_message = "The balancer must accept the API and HTTP ports from the allowed networks only."
  }

  assert {
    condition = alltrue([for r in aws_vpc_security_group_ingress_rule.lb :
    r.security_group_id == "sg-0bbbbbbbbbbbbbbbb"])
    error_message = "Client networks must be allowed on the balancer's group."
  }

  assert {
    condition = alltrue(concat(
      [for r in aws_vpc_security_group_ingress_rule.node_from_node : r.cidr_ipv4 == null && r.cidr_ipv6 == null],
      [for r in aws_vpc_security_group_ingress_rule.node_from_lb : r.cidr_ipv4 == null && r.cidr_ipv6 == null],
    ))
    error_message = "No address range may reach the servers directly."
  }

  assert {
    condition     = toset([for r in aws_vpc_security_group_egress_rule.node_https : "${r.from_port}>${r.cidr_ipv4}"]) == toset(["443>10.40.0.0/16"])
    error_message = "The servers' HTTPS egress must be limited to the VPC (its endpoints)."
  }

  assert {
    condition     = output.node_security_group_id == "sg-0aaaaaaaaaaaaaaaa" && output.lb_security_group_id == "sg-0bbbbbbbbbbbbbbbb"
    error_message = "Outputs must name the two security groups."
  }
}

# ACME: each server names its availability zone (filled in at boot), the
# perspectives and resolvers reach node.hcl, and validation egress exists
# only where the operator allowed it.
run "acme_zones" {
  assert {
    condition     = strcontains(module.user_data.node_config, "zone         = \"@AZ@\"") && strcontains(module.user_data.node_config, "perspectives = 2")
    error_message = "node.hcl must name the server's zone and ask two zones by default."
  }

  assert {
    condition     = strcontains(module.user_data.user_data, "-e \"s/@AZ@/$AZ/g\"") && strcontains(module.user_data.user_data, "AZ=$(imds placement/availability-zone)")
    error_message = "The boot script must fill in the zone from the instance metadata."
  }

  assert {
    condition     = !strcontains(module.user_data.node_config, "resolvers") && length(aws_vpc_security_group_egress_rule.node_acme) == 0
    error_message = "By default: the system's resolver, and no egress for http-01 or tls-alpn-01."
  }
}

run "acme_validation_egress" {
  variables {
    acme_validation_cidr_blocks = ["0.0.0.0/0", "::/0"]
    acme_perspectives           = 3
    acme_resolvers              = ["10.40.0.2:53"]
  }

  assert {
    condition = toset([for r in aws_vpc_security_group_egress_rule.node_acme : "${r.from_port}>${coalesce(r.cidr_ipv4, r.cidr_ipv6)}"]) == toset(
    ["80>0.0.0.0/0", "443>0.0.0.0/0", "80>::/0", "443>::/0"])
    error_message = "Validation egress: ports 80 and 443 to the allowed ranges, IPv4 and IPv6."
  }

  assert {
    condition     = strcontains(module.user_data.node_config, "perspectives = 3") && strcontains(module.user_data.node_config, "resolvers    = [\"10.40.0.2:53\"]")
    error_message = "node.hcl must carry the perspectives and resolvers asked for."
  }
}

run "acme_perspectives_bounded" {
  command = plan

  variables {
    acme_perspectives = 4
  }

  expect_failures = [var.acme_perspectives]
}

run "storage" {
  assert {
    condition     = alltrue([for v in aws_ebs_volume.data : v.encrypted && v.final_snapshot])
    error_message = "Data volumes must be encrypted and snapshotted when deleted."
  }

  assert {
    condition = alltrue([for v in aws_ebs_volume.data :
    v.tags["quorumca-cluster"] == "quorumca" && startswith(v.tags["quorumca-node"], "quorumca-")])
    error_message = "Data volumes must carry the cluster tag and their node name."
  }

  assert {
    condition     = aws_launch_template.node.block_device_mappings[0].ebs[0].encrypted == "true"
    error_message = "Root volumes must be encrypted."
  }

  assert {
    condition     = aws_launch_template.node.metadata_options[0].http_tokens == "required"
    error_message = "IMDSv2 must be required."
  }

  assert {
    condition     = aws_launch_template.node.instance_initiated_shutdown_behavior == "terminate"
    error_message = "A server that gives up must be replaced, not left stopped."
  }
}

run "user_data" {
  assert {
    condition     = aws_launch_template.node.user_data == base64gzip(module.user_data.user_data) && length(aws_launch_template.node.user_data) <= 16384 / 3 * 4
    error_message = "The launch template carries the boot script compressed, under EC2's 16 KiB limit."
  }

  assert {
    condition     = strcontains(module.user_data.user_data, "retry_join = [\"provider=aws tag_key=quorumca-cluster tag_value=quorumca region=eu-west-1\"]")
    error_message = "Gossip must auto-join by the cluster tag."
  }

  assert {
    condition     = strcontains(module.user_data.user_data, "bootstrap_expect    = 3")
    error_message = "bootstrap_expect must be the instance count."
  }

  assert {
    condition     = strcontains(module.user_data.user_data, "base_url   = \"http://ca.quorumca.internal:8080\"")
    error_message = "The authority must point certificates at revocation_base_url."
  }

  assert {
    condition     = strcontains(module.user_data.user_data, "ExecStart=/usr/local/bin/quorumca server -config /etc/quorumca/node.hcl")
    error_message = "The systemd unit must start the server with /etc/quorumca/node.hcl."
  }

  assert {
    condition = alltrue([for line in ["User=quorumca", "StateDirectory=quorumca", "AssertPathIsMountPoint=/var/lib/quorumca", "NoNewPrivileges=yes", "ProtectSystem=strict"] :
    strcontains(module.user_data.user_data, line)])
    error_message = "The systemd unit must be the hardened one, on the data volume."
  }

  assert {
    condition     = strcontains(module.user_data.user_data, "aws ec2 attach-volume")
    error_message = "The user data must attach the data volume."
  }

  assert {
    condition     = !strcontains(module.user_data.user_data, "%%{")
    error_message = "Template directives must not leak into the user data."
  }

  assert {
    condition = alltrue([for line in [
      "tls_provisioner = \"servers\"",
      "kind        = \"server\"",
      "dns         = [\"${lower(aws_lb.this.dns_name)}\",\"*.eu-west-1.compute.internal\"]",
      "default_ttl = \"24h\"",
      "sed -i -e '/#@API_TLS_FILES@/d'",
    ] : strcontains(module.user_data.user_data, line)])
    error_message = "Each server gets its own API certificate from the servers provisioner, for the balancer's name and its private DNS name; the shared files are optional."
  }
}

run "api_server_names" {
  command = plan
  variables {
    api_server_names    = ["ca.quorumca.internal"]
    api_certificate_ttl = "72h"
  }

  assert {
    condition     = local.api_server_names[0] == "ca.quorumca.internal" && local.api_server_names[2] == "*.eu-west-1.compute.internal"
    error_message = "The names clients use come first, then the balancer's and the servers' private DNS domain."
  }

  assert {
    condition     = strcontains(module.user_data.authority_config, "default_ttl = \"72h\"")
    error_message = "api_certificate_ttl sets the servers' certificate lifetime."
  }
}

run "outputs" {
  assert {
    condition     = output.api_url == "https://quorumca-50dc6c495c0c9188.elb.eu-west-1.amazonaws.com:8443"
    error_message = "The API URL must be the load balancer's, on port 8443."
  }

  assert {
    condition     = output.kms_key_arn == aws_kms_key.this["issuing"].arn && output.kms_key_uri == "awskms:${aws_kms_key.this["issuing"].arn}"
    error_message = "kms_key_arn and kms_key_uri must name the issuing key."
  }

  assert {
    condition     = output.asg_name == "quorumca" && output.lb_dns_name != ""
    error_message = "asg_name and lb_dns_name must be set."
  }

  assert {
    condition     = output.ssm_parameters.gossip_key == "/quorumca/quorumca/gossip-key"
    error_message = "Parameters live under /quorumca/<name>."
  }
}

run "five_servers" {
  variables {
    instance_count = 5
  }

  assert {
    condition = (
      length(output.data_volume_ids) == 6 &&
      alltrue([for az in ["eu-west-1a", "eu-west-1b", "eu-west-1c"] :
      length([for v in aws_ebs_volume.data : v if v.availability_zone == az]) == 2])
    )
    error_message = "Five servers in three zones need two volumes in every zone."
  }

  assert {
    condition     = aws_autoscaling_group.this.instance_maintenance_policy[0].min_healthy_percentage == 80
    error_message = "Replacements must take one server of five at a time."
  }

  assert {
    condition = (
      strcontains(module.user_data.user_data, "bootstrap_expect    = 5") &&
      strcontains(module.user_data.user_data, "voters              = 5") &&
      strcontains(module.user_data.user_data, "rate        = 48")
    )
    error_message = "Five servers: bootstrap_expect 5, five voters, a fifth of the signing budget each."
  }
}

run "without_http_listener" {
  variables {
    http_listener_enabled = false
  }

  assert {
    condition     = keys(aws_lb_listener.this) == ["api"] && keys(aws_lb_target_group.this) == ["api"]
    error_message = "Without the HTTP listener only the API is balanced."
  }

  assert {
    condition     = keys(aws_vpc_security_group_ingress_rule.node_from_lb) == ["api"] && length([for r in aws_vpc_security_group_ingress_rule.lb : r if r.from_port == 8080]) == 0
    error_message = "Without the HTTP listener port 8080 stays closed."
  }

  assert {
    condition     = !strcontains(module.user_data.user_data, "0.0.0.0:8080")
    error_message = "Without the HTTP listener the servers do not serve plain HTTP."
  }
}

run "ipv6_clients_and_parameter_key" {
  variables {
    allowed_cidr_blocks        = ["10.40.0.0/16", "2001:db8::/56"]
    ssm_parameters_kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
  }

  assert {
    condition     = length([for r in aws_vpc_security_group_ingress_rule.lb : r if r.cidr_ipv6 == "2001:db8::/56" && r.cidr_ipv4 == null]) == 2
    error_message = "An IPv6 client network must be allowed as cidr_ipv6 on both listeners."
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_iam_role_policy.node.policy).Statement :
      s.Action == ["kms:Decrypt"] &&
      s.Resource == ["arn:aws:kms:eu-west-1:123456789012:key/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"] &&
    try(s.Condition.StringEquals["kms:ViaService"], "") == "ssm.eu-west-1.amazonaws.com"])
    error_message = "A customer managed parameter key may be used through SSM only."
  }

  assert {
    condition = alltrue([for s in jsondecode(aws_iam_role_policy.node.policy).Statement :
    !anytrue([for a in s.Action : startswith(a, "ssmmessages:")])])
    error_message = "Session Manager is off by default: the role has no ssmmessages permissions."
  }
}

run "session_manager_on" {
  variables {
    ssm_session_manager_enabled = true
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_iam_role_policy.node.policy).Statement :
    contains(s.Action, "ssmmessages:OpenDataChannel") && !contains(s.Action, "ssm:GetParameters")])
    error_message = "With Session Manager on, the role gets the agent's channels and no more."
  }
}

# Scaling in: the group picks the servers it terminates, so volumes are
# deleted only when their slot is retired by name.
run "scale_in_keeps_volumes" {
  command = plan
  variables {
    instance_count    = 3
    data_volume_slots = 6
  }
  override_data {
    target = data.aws_ebs_volumes.existing
    values = { ids = ["vol-0", "vol-1", "vol-2", "vol-3", "vol-4", "vol-5"] }
  }

  assert {
    condition     = length(aws_ebs_volume.data) == 6
    error_message = "Lowering instance_count with data_volume_slots kept deletes no volume."
  }
}

run "scale_in_retires_the_freed_slots" {
  command = plan
  variables {
    instance_count       = 3
    data_volume_slots    = 6
    retired_volume_slots = [0, 4]
  }
  override_data {
    target = data.aws_ebs_volumes.existing
    values = { ids = ["vol-0", "vol-1", "vol-2", "vol-3", "vol-4", "vol-5"] }
  }

  assert {
    condition = (
      toset(keys(aws_ebs_volume.data)) == toset(["1", "2", "3", "5"]) &&
      aws_ebs_volume.data["3"].availability_zone == "eu-west-1a" && aws_ebs_volume.data["3"].tags["quorumca-node"] == "quorumca-3"
    )
    error_message = "Exactly the retired slots' volumes go; the others keep their zone and node name."
  }
}

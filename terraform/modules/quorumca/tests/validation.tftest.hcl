# Inputs the module must refuse, before anything is created.

mock_provider "aws" {
  source = "./tests/mocks"
}

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

variables {
  name                   = "quorumca"
  subnet_ids             = ["subnet-0a1a1a1a1a1a1a1a1", "subnet-0b2b2b2b2b2b2b2b2", "subnet-0c3c3c3c3c3c3c3c3"]
  ami_id                 = "ami-0123456789abcdef0"
  allowed_cidr_blocks    = ["10.40.0.0/16"]
  kms_key_administrators = ["arn:aws:iam::123456789012:role/pki-admin"]
}

run "valid_inputs_plan" {
  command = plan
}

run "even_instance_count" {
  command = plan
  variables {
    instance_count = 4
  }
  expect_failures = [var.instance_count]
}

run "single_instance" {
  command = plan
  variables {
    instance_count = 1
  }
  expect_failures = [var.instance_count]
}

run "too_many_instances" {
  command = plan
  variables {
    instance_count = 9
  }
  expect_failures = [var.instance_count]
}

run "two_subnets" {
  command = plan
  variables {
    subnet_ids = ["subnet-0a1a1a1a1a1a1a1a1", "subnet-0b2b2b2b2b2b2b2b2"]
  }
  expect_failures = [var.subnet_ids]
}

run "repeated_subnet" {
  command = plan
  variables {
    subnet_ids = ["subnet-0a1a1a1a1a1a1a1a1", "subnet-0a1a1a1a1a1a1a1a1", "subnet-0c3c3c3c3c3c3c3c3"]
  }
  expect_failures = [var.subnet_ids]
}

run "subnets_in_two_zones" {
  command = plan
  override_data {
    target = data.aws_subnet.node[2]
    values = { availability_zone = "eu-west-1a", cidr_block = "10.40.32.0/20", vpc_id = "vpc-0123456789abcdef0" }
  }
  expect_failures = [aws_ebs_volume.data]
}

run "subnets_in_two_vpcs" {
  command = plan
  override_data {
    target = data.aws_subnet.node[2]
    values = { availability_zone = "eu-west-1c", cidr_block = "10.41.32.0/20", vpc_id = "vpc-0fedcba9876543210" }
  }
  expect_failures = [aws_security_group.node]
}

run "invalid_cidr" {
  command = plan
  variables {
    allowed_cidr_blocks = ["10.40.0.0/33"]
  }
  expect_failures = [var.allowed_cidr_blocks]
}

run "address_not_cidr" {
  command = plan
  variables {
    allowed_cidr_blocks = ["10.40.0.1"]
  }
  expect_failures = [var.allowed_cidr_blocks]
}

run "no_client_networks" {
  command = plan
  variables {
    allowed_cidr_blocks = []
  }
  expect_failures = [var.allowed_cidr_blocks]
}

run "invalid_http_cidr" {
  command = plan
  variables {
    http_allowed_cidr_blocks = ["0.0.0.0/0", "everywhere"]
  }
  expect_failures = [var.http_allowed_cidr_blocks]
}

run "invalid_name" {
  command = plan
  variables {
    name = "Quorum_CA"
  }
  expect_failures = [var.name]
}

run "more_voters_than_servers" {
  command = plan
  variables {
    voters = 5
  }
  expect_failures = [var.voters]
}

run "revocation_url_with_path" {
  command = plan
  variables {
    revocation_base_url = "http://ca.example.internal:8080/crl"
  }
  expect_failures = [var.revocation_base_url]
}

run "cluster_tag_overridden" {
  command = plan
  variables {
    tags = { quorumca-cluster = "other" }
  }
  expect_failures = [var.tags]
}

run "no_key_administrators" {
  command = plan
  variables {
    kms_key_administrators = []
  }
  expect_failures = [var.kms_key_administrators]
}

run "account_root_as_key_administrator" {
  command = plan
  variables {
    kms_key_administrators = ["arn:aws:iam::123456789012:root"]
  }
  expect_failures = [var.kms_key_administrators]
}

run "wildcard_key_administrator" {
  command = plan
  variables {
    kms_key_administrators = ["*"]
  }
  expect_failures = [var.kms_key_administrators]
}

run "session_as_key_administrator" {
  command = plan
  variables {
    kms_key_administrators = ["arn:aws:sts::123456789012:assumed-role/pki-admin/alice"]
  }
  expect_failures = [var.kms_key_administrators]
}

run "invalid_kms_endpoint" {
  command = plan
  variables {
    kms_vpc_endpoint_id = "vpc-0123456789abcdef0"
  }
  expect_failures = [var.kms_vpc_endpoint_id]
}

run "invalid_alert_topic" {
  command = plan
  variables {
    alert_topic_arn = "arn:aws:sqs:eu-west-1:123456789012:queue"
  }
  expect_failures = [var.alert_topic_arn]
}

run "https_revocation_url" {
  command = plan
  variables {
    revocation_base_url = "https://ca.quorumca.internal"
  }
  expect_failures = [var.revocation_base_url]
}

run "negative_grace_period" {
  command = plan
  variables {
    health_check_grace_period = -1
  }
  expect_failures = [var.health_check_grace_period]
}

run "dead_server_cleanup_below_the_floor" {
  command = plan
  variables {
    dead_server_cleanup = "5m"
  }
  expect_failures = [var.dead_server_cleanup]
}

run "dead_server_cleanup_shorter_than_a_replacement" {
  command = plan
  variables {
    dead_server_cleanup       = "15m"
    health_check_grace_period = 1200
  }
  expect_failures = [var.dead_server_cleanup]
}

run "dead_server_cleanup_at_the_floor" {
  command = plan
  variables {
    dead_server_cleanup       = "1h"
    health_check_grace_period = 3599
  }
}

run "ebs_key_alias_not_arn" {
  command = plan
  variables {
    ebs_kms_key_arn = "alias/aws/ebs"
  }
  expect_failures = [var.ebs_kms_key_arn]
}

run "parameter_key_id_not_arn" {
  command = plan
  variables {
    ssm_parameters_kms_key_arn = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
  }
  expect_failures = [var.ssm_parameters_kms_key_arn]
}

run "boundary_not_a_policy" {
  command = plan
  variables {
    iam_permissions_boundary_arn = "arn:aws:iam::123456789012:role/boundary"
  }
  expect_failures = [var.iam_permissions_boundary_arn]
}

run "checked_arns_accepted" {
  command = plan
  variables {
    ebs_kms_key_arn              = "arn:aws:kms:eu-west-1:123456789012:key/0b5f5a3c-8f0e-4a8e-9d3b-1c2d3e4f5a6b"
    ssm_parameters_kms_key_arn   = "arn:aws:kms:eu-west-1:123456789012:key/mrk-0123456789abcdef0123456789abcdef"
    iam_permissions_boundary_arn = "arn:aws:iam::123456789012:policy/org/boundary"
  }
}

run "no_issuing_key" {
  command = plan
  variables {
    issuing_key_generations = 0
  }
  expect_failures = [var.issuing_key_generations]
}

run "generation_in_use_not_made" {
  command = plan
  variables {
    issuing_key_generations       = 2
    issuing_key_generation_in_use = 3
  }
  expect_failures = [var.issuing_key_generation_in_use]
}

run "elb_health_checks" {
  command = plan
  variables {
    health_check_type = "ELB"
  }
  expect_failures = [var.health_check_type]
}

run "launch_timeout_shorter_than_the_volume_wait" {
  command = plan
  variables {
    launch_timeout = 900
  }
  expect_failures = [var.launch_timeout]
}

run "termination_timeout_over_the_hook_limit" {
  command = plan
  variables {
    termination_timeout = 7201
  }
  expect_failures = [var.termination_timeout]
}

run "ready_for_less_than_the_stabilization_time" {
  command = plan
  variables {
    ready_stable_seconds = 5
  }
  expect_failures = [var.ready_stable_seconds]
}

run "log_retention_not_offered" {
  command = plan
  variables {
    log_retention_days = 45
  }
  expect_failures = [var.log_retention_days]
}

run "audit_retention_not_offered" {
  command = plan
  variables {
    audit_log_retention_days = 0
  }
  expect_failures = [var.audit_log_retention_days]
}

run "logs_key_alias_not_arn" {
  command = plan
  variables {
    logs_kms_key_arn = "alias/logs"
  }
  expect_failures = [var.logs_kms_key_arn]
}

run "object_lock_outliving_the_retention" {
  command = plan
  variables {
    backup_retention_days   = 7
    backup_object_lock_days = 7
  }
  expect_failures = [var.backup_object_lock_days]
}

run "snapshot_interval_in_seconds" {
  command = plan
  variables {
    snapshot_interval = "90s"
  }
  expect_failures = [var.snapshot_interval]
}

run "copy_vault_not_an_arn" {
  command = plan
  variables {
    backup_copy_vault_arn = "quorumca-copy"
  }
  expect_failures = [var.backup_copy_vault_arn]
}

run "restore_signer_not_a_role" {
  command = plan
  variables {
    restore_signer_role_arns = ["arn:aws:iam::123456789012:user/someone"]
  }
  expect_failures = [var.restore_signer_role_arns]
}

run "api_server_name_wildcard" {
  command = plan
  variables { api_server_names = ["*.example.internal"] }
  expect_failures = [var.api_server_names]
}

run "api_certificate_ttl_in_minutes" {
  command = plan
  variables { api_certificate_ttl = "90m" }
  expect_failures = [var.api_certificate_ttl]
}

run "scale_in_that_would_delete_volumes" {
  command = plan
  variables { instance_count = 3 }
  override_data {
    target = data.aws_ebs_volumes.existing
    values = { ids = ["vol-0", "vol-1", "vol-2", "vol-3", "vol-4", "vol-5"] }
  }
  expect_failures = [aws_ebs_volume.data]
}

run "retiring_a_whole_zone" {
  command = plan
  variables {
    data_volume_slots    = 6
    retired_volume_slots = [0, 3]
  }
  expect_failures = [aws_ebs_volume.data]
}

run "retired_slot_out_of_range" {
  command = plan
  variables { retired_volume_slots = [9] }
  expect_failures = [var.retired_volume_slots]
}

run "too_few_volume_slots" {
  command = plan
  variables { data_volume_slots = 2 }
  expect_failures = [var.data_volume_slots]
}

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

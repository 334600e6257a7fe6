# Shared defaults for the mocked AWS provider (terraform test). Mocked
# providers invent computed attributes as random strings; these give them
# the shapes AWS-side validation parses (ARNs, IDs) and a region, an account
# and three zones.

mock_data "aws_caller_identity" {
  defaults = {
    account_id = "123456789012"
    arn        = "arn:aws:iam::123456789012:user/terraform"
    user_id    = "AIDAEXAMPLE"
  }
}

mock_data "aws_partition" {
  defaults = {
    partition  = "aws"
    dns_suffix = "amazonaws.com"
  }
}

mock_data "aws_region" {
  defaults = {
    id   = "eu-west-1"
    name = "eu-west-1"
  }
}

mock_data "aws_availability_zones" {
  defaults = {
    names    = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    zone_ids = ["euw1-az1", "euw1-az2", "euw1-az3"]
  }
}

mock_data "aws_ami" {
  defaults = {
    id               = "ami-0123456789abcdef0"
    root_device_name = "/dev/xvda"
    architecture     = "x86_64"
  }
}

mock_resource "aws_iam_role" {
  defaults = {
    arn       = "arn:aws:iam::123456789012:role/quorumca-node"
    unique_id = "AROAEXAMPLE"
  }
}

mock_resource "aws_iam_instance_profile" {
  defaults = {
    arn = "arn:aws:iam::123456789012:instance-profile/quorumca-node"
  }
}

mock_resource "aws_kms_key" {
  defaults = {
    arn    = "arn:aws:kms:eu-west-1:123456789012:key/0b5f5a3c-8f0e-4a8e-9d3b-1c2d3e4f5a6b"
    key_id = "0b5f5a3c-8f0e-4a8e-9d3b-1c2d3e4f5a6b"
  }
}

mock_resource "aws_lb" {
  defaults = {
    arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/quorumca/50dc6c495c0c9188"
    arn_suffix = "net/quorumca/50dc6c495c0c9188"
    dns_name   = "quorumca-50dc6c495c0c9188.elb.eu-west-1.amazonaws.com"
    zone_id    = "Z2IFOLAFXWLO4F"
  }
}

mock_resource "aws_lb_target_group" {
  defaults = {
    arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/quorumca-api/73e2d6bc24d8a067"
    arn_suffix = "targetgroup/quorumca-api/73e2d6bc24d8a067"
  }
}

mock_resource "aws_lb_listener" {
  defaults = {
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/net/quorumca/50dc6c495c0c9188/f2f7dc8efc522ab2"
  }
}

mock_resource "aws_launch_template" {
  defaults = {
    id             = "lt-0123456789abcdef0"
    arn            = "arn:aws:ec2:eu-west-1:123456789012:launch-template/lt-0123456789abcdef0"
    latest_version = 1
  }
}

mock_resource "aws_autoscaling_group" {
  defaults = {
    arn = "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:6d1a5b02-7a1c-4c8e-9f3e-2b4c6d8e0f1a:autoScalingGroupName/quorumca"
  }
}

mock_resource "aws_route53_zone" {
  defaults = {
    zone_id = "Z0123456789ABCDEFGHIJ"
    arn     = "arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ"
  }
}

mock_resource "aws_sns_topic" {
  defaults = {
    arn = "arn:aws:sns:eu-west-1:123456789012:quorumca-alerts"
  }
}

mock_resource "aws_cloudwatch_event_rule" {
  defaults = {
    arn = "arn:aws:events:eu-west-1:123456789012:rule/quorumca-signing-key-changes"
  }
}

mock_resource "aws_vpc_endpoint" {
  defaults = {
    id = "vpce-0123456789abcdef0"
  }
}

mock_resource "aws_cloudwatch_log_group" {
  defaults = {
    arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/quorumca/quorumca/mock"
  }
}

# A new cluster: no data volumes yet (runs that scale in override it).
mock_data "aws_ebs_volumes" {
  defaults = {
    ids = []
  }
}

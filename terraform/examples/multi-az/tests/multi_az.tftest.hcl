# Plans and applies the example against a mocked AWS provider (no
# credentials, no network). The module's own tests check its resources in
# detail; these check that the example wires a complete, three-zone cluster
# together.

mock_provider "aws" {
  source = "../../modules/quorumca/tests/mocks"
}

# The module reads the example's subnets back.
override_data {
  target = module.quorumca.data.aws_subnet.node[0]
  values = { availability_zone = "eu-west-1a", cidr_block = "10.40.0.0/20", vpc_id = "vpc-0123456789abcdef0" }
}

override_data {
  target = module.quorumca.data.aws_subnet.node[1]
  values = { availability_zone = "eu-west-1b", cidr_block = "10.40.16.0/20", vpc_id = "vpc-0123456789abcdef0" }
}

override_data {
  target = module.quorumca.data.aws_subnet.node[2]
  values = { availability_zone = "eu-west-1c", cidr_block = "10.40.32.0/20", vpc_id = "vpc-0123456789abcdef0" }
}

override_resource {
  target = module.quorumca.aws_security_group.node
  values = { id = "sg-0aaaaaaaaaaaaaaaa" }
}

override_resource {
  target = module.quorumca.aws_security_group.lb
  values = { id = "sg-0bbbbbbbbbbbbbbbb" }
}

variables {
  ami_id                 = "ami-0123456789abcdef0"
  kms_key_administrators = ["arn:aws:iam::123456789012:role/terraform"]
}

run "plan" {
  command = plan

  assert {
    condition     = length(aws_subnet.private) == 3 && length(distinct(aws_subnet.private[*].availability_zone)) == 3
    error_message = "Three private subnets in three availability zones."
  }

  assert {
    condition     = toset(aws_subnet.private[*].cidr_block) == toset(["10.40.0.0/20", "10.40.16.0/20", "10.40.32.0/20"])
    error_message = "The subnets are the first three /20s of the VPC."
  }
}

run "apply" {
  assert {
    condition = alltrue([for k in module.quorumca.kms_key_policies : anytrue([
      for s in jsondecode(k).Statement :
      s.Effect == "Deny" && try(s.Condition.StringNotEquals["aws:SourceVpce"], "") == aws_vpc_endpoint.interface["kms"].id
    ])])
    error_message = "The keys must sign only through the example's KMS endpoint."
  }

  assert {
    condition     = toset(aws_subnet.private[*].availability_zone) == toset(["eu-west-1a", "eu-west-1b", "eu-west-1c"])
    error_message = "Three private subnets in three availability zones."
  }

  assert {
    condition     = length(module.quorumca.data_volume_ids) == 3
    error_message = "One data volume per server."
  }

  assert {
    condition     = aws_vpc.this.enable_dns_hostnames && aws_vpc.this.enable_dns_support
    error_message = "The servers advertise their private DNS names: the VPC must resolve them."
  }

  assert {
    condition     = toset([for e in aws_vpc_endpoint.interface : e.service_name]) == toset(["com.amazonaws.eu-west-1.autoscaling", "com.amazonaws.eu-west-1.ec2", "com.amazonaws.eu-west-1.kms", "com.amazonaws.eu-west-1.logs", "com.amazonaws.eu-west-1.s3", "com.amazonaws.eu-west-1.ssm", "com.amazonaws.eu-west-1.ssmmessages"])
    error_message = "Without internet access the servers need endpoints for EC2, KMS, SSM and Session Manager."
  }

  assert {
    condition     = alltrue([for e in aws_vpc_endpoint.interface : e.private_dns_enabled && length(e.subnet_ids) == 3])
    error_message = "Endpoints must answer the public API names, in every zone."
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.endpoints.referenced_security_group_id == module.quorumca.node_security_group_id && aws_vpc_security_group_ingress_rule.endpoints.from_port == 443
    error_message = "The endpoints must accept HTTPS from the servers."
  }

  assert {
    condition     = module.quorumca.node_security_group_id != module.quorumca.lb_security_group_id
    error_message = "Servers and balancer have security groups of their own."
  }

  assert {
    condition     = aws_route53_record.ca.alias[0].name == module.quorumca.lb_dns_name && aws_route53_record.ca.name == "ca.quorumca.internal"
    error_message = "ca.<zone> must alias the load balancer."
  }

  assert {
    condition     = output.api_url == "https://ca.quorumca.internal:8443"
    error_message = "Clients use the stable name on the API port."
  }

  assert {
    condition     = output.revocation_base_url == "http://ca.quorumca.internal:8080"
    error_message = "Certificates must point at the stable name, not the balancer's."
  }

  assert {
    condition     = startswith(output.kms_key_arn, "arn:aws:kms:eu-west-1:") && output.kms_key_uri == "awskms:${output.kms_key_arn}"
    error_message = "The issuing key's ARN and signer URI."
  }

  assert {
    condition     = output.asg_name == "quorumca" && endswith(output.lb_dns_name, ".elb.eu-west-1.amazonaws.com")
    error_message = "asg_name and lb_dns_name must be set."
  }
}

run "five_servers" {
  variables {
    instance_count = 5
  }

  assert {
    condition     = length(module.quorumca.data_volume_ids) == 6
    error_message = "Five servers in three zones need two volumes per zone."
  }
}

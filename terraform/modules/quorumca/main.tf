data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

# The subnets say which availability zones the servers (and their data
# volumes) live in, and the load balancer's address ranges.
data "aws_subnet" "node" {
  count = 3
  id    = var.subnet_ids[count.index]
}

data "aws_subnet" "lb" {
  count = var.lb_subnet_ids == null ? 0 : 3
  id    = var.lb_subnet_ids[count.index]
}

# For the root device name, which differs between distributions.
data "aws_ami" "node" {
  filter {
    name   = "image-id"
    values = [var.ami_id]
  }
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # .id is the region name in both provider 5.x and 6.x (6.x deprecates .name).
  region = data.aws_region.current.id

  vpc_id             = data.aws_subnet.node[0].vpc_id
  availability_zones = data.aws_subnet.node[*].availability_zone

  lb_subnet_ids = coalesce(var.lb_subnet_ids, var.subnet_ids)
  # The balancer's nodes take addresses in its subnets. With client IP
  # preservation off they are the source of proxied connections, and the
  # servers trust PROXY protocol headers (the client's address) from them only.
  lb_subnet_cidrs = var.lb_subnet_ids == null ? data.aws_subnet.node[*].cidr_block : data.aws_subnet.lb[*].cidr_block

  ports = {
    api    = 8443 # HTTPS API: clients, and servers forwarding writes and joining
    http   = 8080 # plain HTTP: CRLs and OCSP
    raft   = 8300
    gossip = 8301
  }

  voters = coalesce(var.voters, var.instance_count >= 5 ? 5 : 3)

  # Each server's share of the KMS signing quota.
  signer_rate  = floor(var.kms_sign_budget / var.instance_count)
  signer_burst = max(1, floor(local.signer_rate / 5))

  # Data volumes live in one zone each, and a server can only attach a volume
  # in its own zone. Every zone gets enough volumes for the largest number of
  # servers a balanced group puts there (for 5 servers: 2, 2 and 1, in zones
  # the group picks), so the count is rounded up to a multiple of 3.
  volume_count = 3 * ceil(var.instance_count / 3)
  # Slots 0 .. data_volume_slots - 1 but the retired ones (storage.tf).
  volume_slots = coalesce(var.data_volume_slots, local.volume_count)
  volume_keys  = toset([for i in range(local.volume_slots) : tostring(i) if !contains(var.retired_volume_slots, i)])

  # Rolling updates and replacements: terminate first (the new server needs
  # the old one's volume), one server at a time. The minimum healthy
  # percentage is rounded up to whole servers by AWS, so
  # floor(100 * (N - 1) / N) keeps exactly N - 1 in service.
  min_healthy_percentage = floor(100 * (var.instance_count - 1) / var.instance_count)

  ssm_parameter_prefix = coalesce(var.ssm_parameter_prefix, "/quorumca/${var.name}")
  ssm_parameters = {
    gossip_key    = "${local.ssm_parameter_prefix}/gossip-key"
    join_secret   = "${local.ssm_parameter_prefix}/join-secret"
    api_tls_cert  = "${local.ssm_parameter_prefix}/api-tls-cert"
    api_tls_key   = "${local.ssm_parameter_prefix}/api-tls-key"
    root_ca       = "${local.ssm_parameter_prefix}/root-ca"
    issuing_chain = "${local.ssm_parameter_prefix}/issuing-chain"
  }

  cluster_tag_key = "quorumca-cluster"

  # The group launches with EC2 Auto Scaling's default service-linked role.
  autoscaling_service_role = "arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/autoscaling.${data.aws_partition.current.dns_suffix}/AWSServiceRoleForAutoScaling"

  # Each server's API certificate (the "servers" provisioner): the names
  # clients use, the balancer's, and one label under the zone's private
  # DNS domain, which is where each server's advertised name lives.
  private_dns_domain = local.region == "us-east-1" ? "ec2.internal" : "${local.region}.compute.internal"
  api_server_names   = distinct(concat(var.api_server_names, [lower(aws_lb.this.dns_name)], ["*.${local.private_dns_domain}"]))

  revocation_base_url = coalesce(var.revocation_base_url, "http://${aws_lb.this.dns_name}:${local.ports.http}")

  tags = merge(var.tags, { (local.cluster_tag_key) = var.name })
}

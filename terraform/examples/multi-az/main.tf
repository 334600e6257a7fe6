# A three-zone quorumca cluster in a VPC of its own. The VPC has no internet
# gateway: the servers reach AWS through VPC endpoints only, and clients
# reach the CA from inside the VPC (or the networks in client_cidr_blocks,
# once routed here).

data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

locals {
  azs     = slice(sort(data.aws_availability_zones.available.names), 0, 3)
  ca_name = "ca.${var.private_zone_name}"
}

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true # the servers advertise their private DNS names

  tags = { Name = var.name }
}

resource "aws_subnet" "private" {
  count = 3

  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)

  tags = { Name = "${var.name}-private-${local.azs[count.index]}" }
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id

  tags = { Name = "${var.name}-private" }
}

resource "aws_route_table_association" "private" {
  count = 3

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

# --- AWS APIs without internet access ---------------------------------------------

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-endpoints"
  description = "VPC interface endpoints for the quorumca servers"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-endpoints" }
}

resource "aws_vpc_security_group_ingress_rule" "endpoints" {
  security_group_id            = aws_security_group.endpoints.id
  referenced_security_group_id = module.quorumca.node_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  description                  = "HTTPS from the quorumca servers"
}

# kms: signing; ec2: auto-join and data volumes; ssm: the cluster's
# parameters; ssmmessages: Session Manager shells; autoscaling: completing
# the lifecycle hooks; logs: the CloudWatch agent (logs and metrics); s3:
# the scheduled snapshots.
resource "aws_vpc_endpoint" "interface" {
  for_each = toset(["autoscaling", "ec2", "kms", "logs", "s3", "ssm", "ssmmessages"])

  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${var.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true

  tags = { Name = "${var.name}-${each.key}" }
}

# --- The cluster ----------------------------------------------------------------------

module "quorumca" {
  source = "../../modules/quorumca"

  name           = var.name
  instance_count = var.instance_count
  subnet_ids     = aws_subnet.private[*].id
  ami_id         = var.ami_id

  allowed_cidr_blocks = concat([var.vpc_cidr], var.client_cidr_blocks)
  # Written into every certificate: a name of ours, not the balancer's.
  revocation_base_url = "http://${local.ca_name}:8080"

  # Through the VPC endpoints; the keys sign only through this VPC's.
  https_egress_cidr_blocks = [var.vpc_cidr]
  kms_vpc_endpoint_id      = aws_vpc_endpoint.interface["kms"].id
  kms_key_administrators   = var.kms_key_administrators

  tags = var.tags
}

# --- A stable name for clients and for the certificates ------------------------------

resource "aws_route53_zone" "private" {
  name = var.private_zone_name

  vpc {
    vpc_id = aws_vpc.this.id
  }
}

resource "aws_route53_record" "ca" {
  zone_id = aws_route53_zone.private.zone_id
  name    = local.ca_name
  type    = "A"

  alias {
    name                   = module.quorumca.lb_dns_name
    zone_id                = module.quorumca.lb_zone_id
    evaluate_target_health = true
  }
}

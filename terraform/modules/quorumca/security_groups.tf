# Two groups: the servers', and the load balancer's. Clients reach the API
# only through the balancer, from allowed_cidr_blocks; the balancer (traffic
# and health checks) and the other servers are the only sources the servers
# accept; Raft and gossip stay between the servers.

resource "aws_security_group" "node" {
  name        = "${var.name}-node"
  description = "quorumca servers of ${var.name}: Raft, gossip and forwarding between servers, API from the load balancer"
  vpc_id      = local.vpc_id

  tags = merge(local.tags, { Name = "${var.name}-node" })

  lifecycle {
    precondition {
      condition     = length(distinct(data.aws_subnet.node[*].vpc_id)) == 1
      error_message = "subnet_ids must all be in the same VPC."
    }
  }
}

resource "aws_security_group" "lb" {
  name        = "${var.name}-lb"
  description = "quorumca load balancer of ${var.name}: API and revocation from allowed networks"
  vpc_id      = local.vpc_id

  tags = merge(local.tags, { Name = "${var.name}-lb" })

  lifecycle {
    precondition {
      condition     = var.lb_subnet_ids == null || alltrue([for s in data.aws_subnet.lb : s.vpc_id == local.vpc_id])
      error_message = "lb_subnet_ids must be in the VPC of subnet_ids."
    }
  }
}

locals {
  # Traffic among the servers, allowed in both directions within the group.
  intra_cluster = {
    raft       = { port = local.ports.raft, protocol = "tcp", description = "Raft replication" }
    gossip-tcp = { port = local.ports.gossip, protocol = "tcp", description = "gossip (memberlist, TCP)" }
    gossip-udp = { port = local.ports.gossip, protocol = "udp", description = "gossip (memberlist, UDP)" }
    api        = { port = local.ports.api, protocol = "tcp", description = "forwarded writes, joins and node certificates" }
  }

  # What the balancer forwards to the servers (health checks use the API port).
  lb_to_node = merge(
    { api = { port = local.ports.api, description = "API and /v1/ready health checks from the load balancer" } },
    var.http_listener_enabled ? { http = { port = local.ports.http, description = "CRLs and OCSP from the load balancer" } } : {},
  )

  # Client networks, per listener: { "<listener>|<cidr>" = {...} }.
  lb_ingress = merge(
    { for c in var.allowed_cidr_blocks : "api|${c}" => { port = local.ports.api, cidr = c, description = "quorumca API" } },
    var.http_listener_enabled ? {
      for c in coalesce(var.http_allowed_cidr_blocks, var.allowed_cidr_blocks) :
      "http|${c}" => { port = local.ports.http, cidr = c, description = "CRLs and OCSP" }
    } : {},
  )
}

resource "aws_vpc_security_group_ingress_rule" "node_from_node" {
  for_each = local.intra_cluster

  security_group_id            = aws_security_group.node.id
  referenced_security_group_id = aws_security_group.node.id
  ip_protocol                  = each.value.protocol
  from_port                    = each.value.port
  to_port                      = each.value.port
  description                  = each.value.description

  tags = local.tags
}

resource "aws_vpc_security_group_egress_rule" "node_to_node" {
  for_each = local.intra_cluster

  security_group_id            = aws_security_group.node.id
  referenced_security_group_id = aws_security_group.node.id
  ip_protocol                  = each.value.protocol
  from_port                    = each.value.port
  to_port                      = each.value.port
  description                  = each.value.description

  tags = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "node_from_lb" {
  for_each = local.lb_to_node

  security_group_id            = aws_security_group.node.id
  referenced_security_group_id = aws_security_group.lb.id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  description                  = each.value.description

  tags = local.tags
}

# KMS, EC2 (auto-join, volumes) and SSM are HTTPS APIs. DNS, the instance
# metadata service and NTP are not filtered by security groups.
resource "aws_vpc_security_group_egress_rule" "node_https" {
  for_each = toset(var.https_egress_cidr_blocks)

  security_group_id = aws_security_group.node.id
  cidr_ipv4         = strcontains(each.value, ":") ? null : each.value
  cidr_ipv6         = strcontains(each.value, ":") ? each.value : null
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "AWS APIs (KMS, EC2, SSM)"

  tags = local.tags
}

# ACME validation: http-01 and tls-alpn-01 connect to the names ordered.
resource "aws_vpc_security_group_egress_rule" "node_acme" {
  for_each = { for pair in setproduct(var.acme_validation_cidr_blocks, [80, 443]) : "${pair[1]}>${pair[0]}" => pair }

  security_group_id = aws_security_group.node.id
  cidr_ipv4         = strcontains(each.value[0], ":") ? null : each.value[0]
  cidr_ipv6         = strcontains(each.value[0], ":") ? each.value[0] : null
  ip_protocol       = "tcp"
  from_port         = each.value[1]
  to_port           = each.value[1]
  description       = each.value[1] == 80 ? "ACME http-01 validation" : "ACME tls-alpn-01 validation"

  tags = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "lb" {
  for_each = local.lb_ingress

  security_group_id = aws_security_group.lb.id
  cidr_ipv4         = strcontains(each.value.cidr, ":") ? null : each.value.cidr
  cidr_ipv6         = strcontains(each.value.cidr, ":") ? each.value.cidr : null
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  description       = each.value.description

  tags = local.tags
}

resource "aws_vpc_security_group_egress_rule" "lb_to_node" {
  for_each = local.lb_to_node

  security_group_id            = aws_security_group.lb.id
  referenced_security_group_id = aws_security_group.node.id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  description                  = each.value.description

  tags = local.tags
}

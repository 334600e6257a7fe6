# A network load balancer passes TCP through: TLS (and clients' mutual TLS)
# ends on the servers, never on the balancer. Client IP preservation is off
# and PROXY protocol v2 on, so the servers see connections from the
# balancer's addresses (which the security groups can name) and still learn
# each client's address for the audit log (api.proxy_protocol_from).

resource "aws_lb" "this" {
  name               = var.name
  load_balancer_type = "network"
  internal           = var.lb_internal
  subnets            = local.lb_subnet_ids
  security_groups    = [aws_security_group.lb.id]

  enable_cross_zone_load_balancing = var.lb_cross_zone_enabled
  enable_deletion_protection       = var.lb_deletion_protection

  tags = local.tags
}

locals {
  target_groups = merge(
    { api = local.ports.api },
    var.http_listener_enabled ? { http = local.ports.http } : {},
  )
}

resource "aws_lb_target_group" "this" {
  for_each = local.target_groups

  name        = "${var.name}-${each.key}"
  port        = each.value
  protocol    = "TCP"
  target_type = "instance"
  vpc_id      = local.vpc_id

  preserve_client_ip = "false"
  proxy_protocol_v2  = true

  # A stopping server hands leadership over and finishes requests in flight
  # within seconds.
  deregistration_delay = 30

  # Both target groups follow the server's readiness on the API port: a
  # server that cannot serve the API (no leader, not caught up, signer
  # unusable) should not answer for revocation either.
  health_check {
    enabled             = true
    protocol            = "HTTPS"
    port                = tostring(local.ports.api)
    path                = "/v1/ready"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = local.tags
}

resource "aws_lb_listener" "this" {
  for_each = local.target_groups

  load_balancer_arn = aws_lb.this.arn
  port              = each.value
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this[each.key].arn
  }

  tags = local.tags
}

# Egress only: nothing connects to a worker. IMDS, the VPC resolver and the
# Amazon time service are link-local and not filtered by security groups.
resource "aws_security_group" "agent" {
  name_prefix = "${var.name}-agent-"
  description = "rangefleet ${var.name} agents: HTTPS out, nothing in"
  vpc_id      = local.vpc_id
  tags        = merge(local.launch_tags, { Name = "${var.name}-agent" })

  egress {
    description = "HTTPS to S3, SQS, EC2 and the agent download"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = var.egress_cidr_blocks
  }

  lifecycle {
    create_before_destroy = true
  }
}

# Keeps S3 traffic off the NAT gateway (and its per-GB charge).
resource "aws_vpc_endpoint" "s3" {
  count             = length(var.s3_gateway_endpoint_route_table_ids) > 0 ? 1 : 0
  vpc_id            = local.vpc_id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.s3_gateway_endpoint_route_table_ids
  tags              = merge(local.launch_tags, { Name = "${var.name}-s3" })
}

# A fleet using the options beyond the basic example: attribute-based
# instance selection with an on-demand floor, an extra security group, a
# permissions boundary and path for the role, and alarms sent to SNS.
# Replace the IDs, ARNs, buckets and the agent_url/agent_sha256 pair (from
# scripts/dist) with your own; README.md beside this file explains each.
#
#   terraform init && terraform apply

terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.54"
    }
  }
}

provider "aws" {
  region = "us-east-1"
}

module "fleet" {
  source = "../.."

  name       = "trips-full"
  subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210", "subnet-00112233445566778"]
  max_size   = 40

  # Any current-generation Intel or AMD type with 2-8 vCPUs and 4-32 GiB,
  # instead of a list of types (which must then be empty).
  instance_types = []
  instance_requirements = {
    vcpu_count            = { min = 2, max = 8 }
    memory_mib            = { min = 4096, max = 32768 }
    instance_generations  = ["current"]
    burstable_performance = "excluded"
  }

  # Two on-demand instances that spot interruptions cannot take; the rest spot.
  on_demand_base_capacity                  = 2
  on_demand_percentage_above_base_capacity = 0

  inputs  = ["s3://trips-data/trips/", "s3://trips-archive/2016/"]
  results = "s3://trips-data/results/run-43/"
  tags = {
    team = "data"
    Name = "worker-{instance_id}"
  }
  publish_tags = true

  agent_url    = "s3://trips-artifacts/rangefleet/0.1.0/rangefleet-x86_64-linux"
  agent_sha256 = "0f343b0931126a20f133d67c2b018a3b4f2c3b8c1e8d6a2d0f9b6ad1e2c3d4e5"

  # The role the module creates, under a path and a permissions boundary.
  iam_role_path                 = "/rangefleet/"
  iam_role_permissions_boundary = "arn:aws:iam::123456789012:policy/fleet-boundary"

  # An existing group, e.g. one a monitoring agent needs, next to the
  # module's egress-only group.
  security_group_ids = ["sg-0123456789abcdef0"]

  # Operator alarms (unhealthy fleet, dead letters, oldest job) to SNS.
  alarm_sns_topic_arn     = "arn:aws:sns:us-east-1:123456789012:rangefleet-alerts"
  queue_age_alarm_seconds = 21600
  unhealthy_alarm_percent = 20
  unhealthy_alarm_minutes = 15

  # Each instance's agent journal in CloudWatch Logs, a stream per instance.
  journal_log_group = { name = "/rangefleet/trips", retention_in_days = 14 }

  termination_hook_heartbeat_seconds  = 300
  enable_ssm                          = true
  s3_gateway_endpoint_route_table_ids = ["rtb-0123456789abcdef0"]
}

output "queue_url" {
  description = "Job queue for `rangefleet plan --queue`."
  value       = module.fleet.queue_url
}

output "dlq_url" {
  description = "Dead-letter queue, for the runbook's receive-message and redrive."
  value       = module.fleet.dlq_url
}

output "autoscaling_group_name" {
  description = "The fleet's auto-scaling group (describe-instance-refreshes, scaling activities)."
  value       = module.fleet.autoscaling_group_name
}

output "alarm_names" {
  description = "The operator alarms."
  value       = module.fleet.alarm_names
}

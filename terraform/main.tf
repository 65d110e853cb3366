# rangefleet fleet: an auto-scaling group of spot instances that lease jobs
# from SQS, range-read S3 and write results back. See README.md beside this
# file and docs/launch.md.

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

data "aws_subnet" "first" {
  id = var.subnet_ids[0]
}

data "aws_ssm_parameter" "ami" {
  count = var.ami_id == null ? 1 : 0
  name  = var.ami_ssm_parameter
}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  vpc_id     = data.aws_subnet.first.vpc_id
  ami_id     = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.ami[0].insecure_value

  # Tags whose values are templates ({instance_id} …) differ per instance, so
  # they cannot be set at launch; the agent sets them when publish_tags is on.
  templated_tag_keys = sort([for k, v in var.tags : k if can(regex("\\{[a-z_]+\\}", v))])
  launch_tags = merge(
    { for k, v in var.tags : k => v if !contains(local.templated_tag_keys, k) },
    { "rangefleet:fleet" = var.name },
  )
  agent_tags = merge(var.tags, { "rangefleet:fleet" = var.name })

  # s3://bucket/some/prefix -> bucket + "some/prefix/" (a "/" boundary, as the
  # agent's allow-list does), or "" for a whole bucket.
  input_paths = [
    for u in var.inputs : {
      bucket = regex("^s3://([^/]+)", u)[0]
      path   = trimsuffix(replace(u, "/^s3://[^/]+/?/", ""), "/")
    }
  ]
  inputs        = [for i in local.input_paths : { bucket = i.bucket, prefix = i.path == "" ? "" : "${i.path}/" }]
  input_buckets = distinct([for i in local.inputs : i.bucket])
  results_path  = trimsuffix(replace(var.results, "/^s3://[^/]+/?/", ""), "/")
  results = {
    bucket = regex("^s3://([^/]+)", var.results)[0]
    prefix = local.results_path == "" ? "" : "${local.results_path}/"
  }
  # The termination lifecycle hook the agent completes after draining
  # (CompleteLifecycleAction needs the hook's name).
  drain_hook_name = "rangefleet-drain"

  # Named here, not read from the alarm: the alarm watches the group, and the
  # group's instance refresh names the alarm.
  unhealthy_alarm_name = "${var.name}-unhealthy"

  instance_profile_arn  = var.create_iam_instance_profile ? aws_iam_instance_profile.agent[0].arn : module.settings.instance_profile.arn
  instance_profile_name = var.create_iam_instance_profile ? null : module.settings.instance_profile.name

  agent_object_arn = startswith(var.agent_url, "s3://") ? "arn:${local.partition}:s3:::${trimprefix(var.agent_url, "s3://")}" : null
}

# Provider-free cross-checks of the fleet inputs (exactly one of instance_types
# and instance_requirements, the instance profile choice, …), tested offline
# by modules/settings/tests.
module "settings" {
  source = "./modules/settings"

  max_size                                 = var.max_size
  instance_types                           = var.instance_types
  instance_requirements                    = var.instance_requirements
  on_demand_base_capacity                  = var.on_demand_base_capacity
  on_demand_percentage_above_base_capacity = var.on_demand_percentage_above_base_capacity
  create_iam_instance_profile              = var.create_iam_instance_profile
  iam_instance_profile_arn                 = var.iam_instance_profile_arn
  iam_instance_profile_name                = var.iam_instance_profile_name
  iam_role_path                            = var.iam_role_path
  iam_role_permissions_boundary            = var.iam_role_permissions_boundary
  security_group_ids                       = var.security_group_ids
  alarm_sns_topic_arn                      = var.alarm_sns_topic_arn
  queue_age_alarm_seconds                  = var.queue_age_alarm_seconds
  unhealthy_alarm_percent                  = var.unhealthy_alarm_percent
  unhealthy_alarm_minutes                  = var.unhealthy_alarm_minutes
}

module "userdata" {
  source = "./modules/userdata"

  queue         = aws_sqs_queue.jobs.url
  inputs        = var.inputs
  results       = var.results
  concurrency   = var.concurrency
  lease_seconds = var.lease_seconds
  tags          = local.agent_tags
  spot          = var.spot
  processors    = var.processors
  publish_tags  = var.publish_tags
  agent_url     = var.agent_url
  agent_sha256  = var.agent_sha256

  journal_cloudwatch = {
    log_group = local.journal_log_group_name
    region    = local.region
  }
}

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
  agent_object_arn = startswith(var.agent_url, "s3://") ? "arn:${local.partition}:s3:::${trimprefix(var.agent_url, "s3://")}" : null
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
}

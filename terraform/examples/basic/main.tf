# A small spot fleet reading s3://trips-data/trips/ and writing results under
# s3://trips-data/results/run-42/. Replace the subnet IDs, buckets and the
# agent_url/agent_sha256 pair (from scripts/dist) with your own.
#
#   terraform init && terraform apply
#   rangefleet plan s3://trips-data/trips/ --queue "$(terraform output -raw queue_url)" \
#     --results s3://trips-data/results/run-42/ --processor taxi-stats

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

  name           = "trips"
  subnet_ids     = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
  instance_types = ["m5.large", "m5a.large", "m6i.large", "m6a.large", "c6i.xlarge", "c5.xlarge"]
  max_size       = 20

  inputs  = ["s3://trips-data/trips/"]
  results = "s3://trips-data/results/run-42/"

  tags = {
    team    = "data"
    project = "trips"
    Name    = "worker-{instance_id}"
  }
  publish_tags = true

  agent_url    = "s3://trips-artifacts/rangefleet/0.1.0/rangefleet-x86_64-linux"
  agent_sha256 = "0f343b0931126a20f133d67c2b018a3b4f2c3b8c1e8d6a2d0f9b6ad1e2c3d4e5"

  enable_ssm                          = true
  s3_gateway_endpoint_route_table_ids = ["rtb-0123456789abcdef0"]
}

output "queue_url" {
  description = "Job queue for `rangefleet plan --queue`."
  value       = module.fleet.queue_url
}

output "autoscaling_group_name" {
  description = "The fleet's auto-scaling group."
  value       = module.fleet.autoscaling_group_name
}

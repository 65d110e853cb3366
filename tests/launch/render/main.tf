# Test-only root: renders user-data through terraform/modules/userdata with a
# realistic config, so scripts/test-launch can hand the result to cloud-init's
# schema check and to `rangefleet userdata check`. Provider-free: `terraform
# apply` works offline with local state in a temporary directory.

variable "tags" {
  description = "Fleet tags for the rendered config (awkward values on purpose)."
  type        = map(string)
  default = {
    team    = "data"
    Name    = "worker-{instance_id}"
    note    = "a: b # not a comment"
    quoted  = "she said \"hi\" and 'bye'"
    boolish = "true"
  }
}

module "userdata" {
  source = "../../../terraform/modules/userdata"

  queue        = "https://sqs.us-east-1.amazonaws.com/123456789012/trips-jobs"
  inputs       = ["s3://trips-data/trips/", "s3://trips-archive/2016/"]
  results      = "s3://trips-data/results/run-42/"
  concurrency  = 8
  tags         = var.tags
  spot         = { on_rebalance = "drain" }
  processors   = { exec = { argv = ["/usr/local/bin/my-step", "--json"], timeout_seconds = 600 } }
  publish_tags = true
  agent_url    = "https://artifacts.example.com/rangefleet/0.1.0/rangefleet-x86_64-linux"
  agent_sha256 = "0f343b0931126a20f133d67c2b018a3b4f2c3b8c1e8d6a2d0f9b6ad1e2c3d4e5"
  # With the journal shipper on: the largest user-data the module makes.
  journal_cloudwatch = { log_group = "/rangefleet/trips", region = "us-east-1" }
}

output "user_data" {
  description = "Plain #cloud-config."
  value       = module.userdata.user_data
}

output "user_data_base64gzip" {
  description = "gzip + base64 form."
  value       = module.userdata.user_data_base64gzip
}

output "config" {
  description = "The config the module was given, as JSON."
  value       = jsonencode(module.userdata.config)
}

output "user_data_bytes" {
  description = "Plain size in bytes."
  value       = module.userdata.user_data_bytes
}

output "user_data_gzip_bytes" {
  description = "gzip size in bytes."
  value       = module.userdata.user_data_gzip_bytes
}

output "user_data" {
  description = "The #cloud-config user-data as plain text."
  value       = local.user_data

  precondition {
    # EC2 caps user-data at 16 KiB. The gzip form is what launch templates get,
    # but staying under the cap in plain text keeps either form usable.
    condition     = local.user_data_bytes <= 16384
    error_message = "rendered user-data is ${local.user_data_bytes} bytes; EC2 allows 16384."
  }
}

output "user_data_base64gzip" {
  description = "The same user-data gzipped and base64-encoded, for aws_launch_template.user_data."
  value       = local.user_data_base64gzip
}

output "agent_config" {
  description = "The agent config document (YAML) written to /etc/rangefleet/agent.yaml."
  value       = local.agent_config
}

output "config" {
  description = "The agent config as an object, exactly the keys written to agent.yaml."
  value       = local.config
}

output "user_data_bytes" {
  description = "Size of the plain user-data in bytes."
  value       = local.user_data_bytes
}

output "user_data_gzip_bytes" {
  description = "Size of the gzipped user-data in bytes (before base64)."
  value       = local.user_data_gzip_bytes
}

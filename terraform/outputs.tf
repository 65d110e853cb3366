output "queue_url" {
  description = "URL of the job queue: give it to `rangefleet plan --queue`."
  value       = aws_sqs_queue.jobs.url
}

output "queue_arn" {
  description = "ARN of the job queue."
  value       = aws_sqs_queue.jobs.arn
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "autoscaling_group_name" {
  description = "Name of the spot auto-scaling group."
  value       = aws_autoscaling_group.agent.name
}

output "launch_template_id" {
  description = "ID of the launch template."
  value       = aws_launch_template.agent.id
}

output "launch_template_version" {
  description = "Latest launch template version (a change triggers an instance refresh)."
  value       = aws_launch_template.agent.latest_version
}

output "role_arn" {
  description = "ARN of the agents' IAM role."
  value       = aws_iam_role.agent.arn
}

output "role_name" {
  description = "Name of the agents' IAM role, for attaching extra policies (e.g. for an exec processor)."
  value       = aws_iam_role.agent.name
}

output "instance_profile_arn" {
  description = "ARN of the agents' instance profile."
  value       = aws_iam_instance_profile.agent.arn
}

output "security_group_id" {
  description = "ID of the agents' egress-only security group."
  value       = aws_security_group.agent.id
}

output "ami_id" {
  description = "AMI the launch template uses."
  value       = local.ami_id
}

output "user_data" {
  description = "The rendered #cloud-config (no secrets), for `rangefleet userdata check`."
  value       = module.userdata.user_data
}

output "user_data_bytes" {
  description = "Size of the plain user-data in bytes (EC2 allows 16384)."
  value       = module.userdata.user_data_bytes
}

output "launch_tags" {
  description = "Tags set at launch on instances, volumes and network interfaces."
  value       = local.launch_tags
}

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

output "autoscaling_group_arn" {
  description = "ARN of the spot auto-scaling group: the only resource of the agents' autoscaling:CompleteLifecycleAction, RecordLifecycleActionHeartbeat and SetInstanceHealth."
  value       = aws_autoscaling_group.agent.arn
}

output "lifecycle_hook_name" {
  description = "Name of the termination lifecycle hook the agent completes after draining."
  value       = aws_autoscaling_lifecycle_hook.drain.name
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
  description = "ARN of the agents' IAM role; null with create_iam_instance_profile = false."
  value       = one(aws_iam_role.agent[*].arn)
}

output "role_name" {
  description = "Name of the agents' IAM role, for attaching extra policies (e.g. for an exec processor); null with create_iam_instance_profile = false."
  value       = one(aws_iam_role.agent[*].name)
}

output "instance_profile_arn" {
  description = "ARN of the agents' instance profile (the one given, or null when it was given by name)."
  value       = local.instance_profile_arn
}

output "iam_policy_json" {
  description = "The agents' least-privilege policy as JSON; attach it to your own role when create_iam_instance_profile = false."
  value       = data.aws_iam_policy_document.agent.json
}

output "security_group_id" {
  description = "ID of the agents' egress-only security group."
  value       = aws_security_group.agent.id
}

output "security_group_ids" {
  description = "Every security group in the launch template: the module's own, then security_group_ids."
  value       = concat([aws_security_group.agent.id], module.settings.security_group_ids)
}

output "alarm_names" {
  description = "CloudWatch alarms: unhealthy (also fails instance refreshes), dead_letters, queue_age."
  value = {
    unhealthy    = aws_cloudwatch_metric_alarm.unhealthy.alarm_name
    dead_letters = aws_cloudwatch_metric_alarm.dead_letters.alarm_name
    queue_age    = aws_cloudwatch_metric_alarm.queue_age.alarm_name
  }
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

output "journal_log_group_name" {
  description = "The CloudWatch Logs group the instances ship their agent journal to (one stream per instance id); null when journal_log_group has no name."
  value       = var.journal_log_group.name == null ? null : aws_cloudwatch_log_group.journal[0].name
}

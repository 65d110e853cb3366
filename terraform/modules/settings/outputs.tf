output "instance_types" {
  description = "Instance types for the mixed instances policy's overrides; empty when instance_requirements is used."
  value       = var.instance_types

  precondition {
    condition     = (length(var.instance_types) > 0) != local.requirements_set
    error_message = "set exactly one of instance_types (a non-empty list) and instance_requirements; to select by attributes, set instance_types = [] as well."
  }
}

output "instance_requirements" {
  description = "The attribute-based selection with cpu_manufacturers filled in (x86_64 only), or null when instance_types is used."
  value       = local.instance_requirements
}

output "instances_distribution" {
  description = "On-demand base and percentage above it; spot for the rest."
  value = {
    on_demand_base_capacity                  = var.on_demand_base_capacity
    on_demand_percentage_above_base_capacity = var.on_demand_percentage_above_base_capacity
  }

  precondition {
    condition     = var.on_demand_base_capacity <= var.max_size
    error_message = "on_demand_base_capacity (${var.on_demand_base_capacity}) is above max_size (${var.max_size}); the group never reaches that many instances."
  }
}

output "instance_profile" {
  description = "Which instance profile the launch template names: create (the module's own), or the arn or name given."
  value = {
    create = var.create_iam_instance_profile
    arn    = var.iam_instance_profile_arn
    name   = var.iam_instance_profile_name
  }

  precondition {
    condition     = var.create_iam_instance_profile ? local.byo_profile_given == 0 : local.byo_profile_given == 1
    error_message = "with create_iam_instance_profile = true leave iam_instance_profile_arn and iam_instance_profile_name null; with false set exactly one of them."
  }
}

output "iam_role" {
  description = "Path and permissions boundary of the role the module creates."
  value = {
    path                 = var.iam_role_path
    permissions_boundary = var.iam_role_permissions_boundary
  }

  precondition {
    # They would be silently ignored: the module creates no role then.
    condition     = var.create_iam_instance_profile || (var.iam_role_path == "/" && var.iam_role_permissions_boundary == null)
    error_message = "iam_role_path and iam_role_permissions_boundary apply to the role the module creates; with create_iam_instance_profile = false set them on your own role."
  }
}

output "security_group_ids" {
  description = "Extra security groups for the launch template."
  value       = var.security_group_ids
}

output "alarm_actions" {
  description = "Actions of the operator alarms: the SNS topic, or none."
  value       = var.alarm_sns_topic_arn == null ? [] : [var.alarm_sns_topic_arn]
}

output "alarms" {
  description = "Thresholds of the operator alarms."
  value = {
    queue_age_seconds = var.queue_age_alarm_seconds
    unhealthy_percent = var.unhealthy_alarm_percent
    unhealthy_minutes = var.unhealthy_alarm_minutes
  }
}

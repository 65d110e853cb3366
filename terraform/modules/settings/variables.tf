# The root module's newer inputs, with the same types and validations as
# ../../variables.tf (tests/launch/test_hcl.py fails if the two drift apart).
# Single-input rules are variable validations; rules that tie inputs together
# are preconditions in outputs.tf, since a variable validation may name other
# variables only from Terraform 1.9 on and the module supports 1.6.

variable "max_size" {
  description = "Most instances the fleet scales out to."
  type        = number
  default     = 10
  nullable    = false

  validation {
    condition     = var.max_size >= 1 && var.max_size <= 1000 && floor(var.max_size) == var.max_size
    error_message = "max_size must be a whole number from 1 to 1000."
  }
}

variable "instance_types" {
  description = "x86_64 instance types the spot fleet may use, in no particular order (price-capacity-optimized picks); more types means fewer interruptions. Set [] to use instance_requirements instead."
  type        = list(string)
  default     = ["m5.large", "m5a.large", "m6i.large", "m6a.large", "m7i.large", "c5.xlarge", "c6i.xlarge", "c6a.xlarge", "r5.large", "r6i.large"]
  nullable    = false

  validation {
    condition     = length(var.instance_types) <= 40 && length(distinct(var.instance_types)) == length(var.instance_types)
    error_message = "instance_types must list at most 40 distinct types (the mixed instances policy limit)."
  }
  validation {
    # The shipped binary is x86_64 only. Graviton families have a "g" after the
    # generation digit (m6g, c7gn, r8g, t4g, x2gd, im4gn, is4gen…) and a1 is
    # arm64 too; Mac instances are not for fleets.
    condition = alltrue([
      for t in var.instance_types :
      can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t)) &&
      !can(regex("^a1\\.", t)) &&
      !can(regex("^mac", t)) &&
      !can(regex("^[a-z]+[0-9]+g[a-z0-9-]*\\.", t))
    ])
    error_message = "instance_types must be x86_64 types such as m5.large or c6i.xlarge; Graviton (m6g, t4g, c7g…), a1 and mac types are not supported."
  }
}

variable "instance_requirements" {
  description = "Attribute-based instance selection, instead of instance_types (then set instance_types = []): vcpu_count and memory_mib ({min, max}) are required, the rest optional as in the ASG's instance_requirements; cpu_manufacturers defaults to [\"intel\", \"amd\"] (x86_64 only). {} (the default) leaves it unused."
  type = object({
    vcpu_count                                  = optional(object({ min = number, max = optional(number) }))
    memory_mib                                  = optional(object({ min = number, max = optional(number) }))
    memory_gib_per_vcpu                         = optional(object({ min = optional(number), max = optional(number) }))
    network_bandwidth_gbps                      = optional(object({ min = optional(number), max = optional(number) }))
    cpu_manufacturers                           = optional(list(string))
    instance_generations                        = optional(list(string))
    allowed_instance_types                      = optional(list(string))
    excluded_instance_types                     = optional(list(string))
    burstable_performance                       = optional(string)
    bare_metal                                  = optional(string)
    local_storage                               = optional(string)
    spot_max_price_percentage_over_lowest_price = optional(number)
  })
  default  = {}
  nullable = false

  validation {
    condition     = length([for k, v in var.instance_requirements : k if v != null]) == 0 || (var.instance_requirements.vcpu_count != null && var.instance_requirements.memory_mib != null)
    error_message = "instance_requirements needs vcpu_count and memory_mib once any attribute is set."
  }
  validation {
    condition = alltrue([
      for r in [var.instance_requirements.vcpu_count, var.instance_requirements.memory_mib] :
      r == null ? true : (r.min >= 1 && floor(r.min) == r.min && (r.max == null ? true : (r.max >= r.min && floor(r.max) == r.max)))
    ])
    error_message = "instance_requirements.vcpu_count and memory_mib need a whole min of at least 1 and, if set, a whole max of at least min."
  }
  validation {
    # cpu_manufacturers decides the architecture: amazon-web-services is
    # Graviton (arm64) and apple is Mac, neither runs the x86_64 binary.
    condition     = var.instance_requirements.cpu_manufacturers == null ? true : (length(var.instance_requirements.cpu_manufacturers) > 0 && alltrue([for m in var.instance_requirements.cpu_manufacturers : contains(["intel", "amd"], m)]))
    error_message = "instance_requirements.cpu_manufacturers may list only intel and amd (the binary is x86_64)."
  }
  validation {
    condition     = var.instance_requirements.allowed_instance_types == null || var.instance_requirements.excluded_instance_types == null
    error_message = "instance_requirements takes allowed_instance_types or excluded_instance_types, not both."
  }
  validation {
    condition = alltrue([
      for v in [var.instance_requirements.burstable_performance, var.instance_requirements.bare_metal, var.instance_requirements.local_storage] :
      v == null ? true : contains(["included", "required", "excluded"], v)
    ])
    error_message = "instance_requirements.burstable_performance, bare_metal and local_storage must be included, required or excluded."
  }
  validation {
    condition     = var.instance_requirements.instance_generations == null ? true : alltrue([for g in var.instance_requirements.instance_generations : contains(["current", "previous"], g)])
    error_message = "instance_requirements.instance_generations may list only current and previous."
  }
  validation {
    condition     = var.instance_requirements.spot_max_price_percentage_over_lowest_price == null ? true : (var.instance_requirements.spot_max_price_percentage_over_lowest_price >= 1 && floor(var.instance_requirements.spot_max_price_percentage_over_lowest_price) == var.instance_requirements.spot_max_price_percentage_over_lowest_price)
    error_message = "instance_requirements.spot_max_price_percentage_over_lowest_price must be a whole number of at least 1."
  }
}

variable "on_demand_base_capacity" {
  description = "Instances launched on-demand before any spot (a floor that interruptions cannot take away); 0 keeps the fleet all spot."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.on_demand_base_capacity >= 0 && var.on_demand_base_capacity <= 1000 && floor(var.on_demand_base_capacity) == var.on_demand_base_capacity
    error_message = "on_demand_base_capacity must be a whole number from 0 to 1000."
  }
}

variable "on_demand_percentage_above_base_capacity" {
  description = "Percentage of the instances above on_demand_base_capacity that are on-demand; 0 makes them all spot."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.on_demand_percentage_above_base_capacity >= 0 && var.on_demand_percentage_above_base_capacity <= 100 && floor(var.on_demand_percentage_above_base_capacity) == var.on_demand_percentage_above_base_capacity
    error_message = "on_demand_percentage_above_base_capacity must be a whole number from 0 to 100."
  }
}

variable "create_iam_instance_profile" {
  description = "Create the agents' IAM role, policy and instance profile; false uses iam_instance_profile_arn or iam_instance_profile_name (attach the iam_policy_json output to its role)."
  type        = bool
  default     = true
  nullable    = false

  validation {
    condition     = var.create_iam_instance_profile == true || var.create_iam_instance_profile == false
    error_message = "create_iam_instance_profile must be true or false."
  }
}

variable "iam_instance_profile_arn" {
  description = "ARN of an existing instance profile, when create_iam_instance_profile is false (or use iam_instance_profile_name)."
  type        = string
  default     = null

  validation {
    condition     = var.iam_instance_profile_arn == null ? true : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:instance-profile/[\\w+=,.@/-]{1,128}$", var.iam_instance_profile_arn))
    error_message = "iam_instance_profile_arn must be null or an instance profile ARN (arn:aws:iam::123456789012:instance-profile/NAME)."
  }
}

variable "iam_instance_profile_name" {
  description = "Name of an existing instance profile, when create_iam_instance_profile is false (or use iam_instance_profile_arn)."
  type        = string
  default     = null

  validation {
    condition     = var.iam_instance_profile_name == null ? true : can(regex("^[\\w+=,.@-]{1,128}$", var.iam_instance_profile_name))
    error_message = "iam_instance_profile_name must be null or 1 to 128 letters, digits or + = , . @ _ -."
  }
}

variable "iam_role_path" {
  description = "IAM path of the role and instance profile the module creates."
  type        = string
  default     = "/"
  nullable    = false

  validation {
    condition     = length(var.iam_role_path) <= 512 && can(regex("^/([\\x21-\\x7e]*/)?$", var.iam_role_path)) && !strcontains(var.iam_role_path, "//")
    error_message = "iam_role_path must be / or a path such as /rangefleet/ (printable ASCII, starting and ending with /, at most 512 characters)."
  }
}

variable "iam_role_permissions_boundary" {
  description = "ARN of a managed policy set as the permissions boundary of the role the module creates; null sets none."
  type        = string
  default     = null

  validation {
    condition     = var.iam_role_permissions_boundary == null ? true : can(regex("^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$", var.iam_role_permissions_boundary))
    error_message = "iam_role_permissions_boundary must be null or an IAM policy ARN."
  }
}

variable "security_group_ids" {
  description = "Extra security groups for the instances, added to the module's egress-only group in the launch template."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    # Five groups per network interface unless the quota was raised (16 at most).
    condition     = length(var.security_group_ids) <= 15 && length(distinct(var.security_group_ids)) == length(var.security_group_ids) && alltrue([for s in var.security_group_ids : can(regex("^sg-[0-9a-f]{8,17}$", s))])
    error_message = "security_group_ids must be at most 15 distinct security group IDs (sg-…)."
  }
}

variable "alarm_sns_topic_arn" {
  description = "SNS topic notified when an operator alarm (unhealthy fleet, dead letters, oldest job) changes state; null notifies nobody (the alarms still exist and the unhealthy one still stops instance refreshes)."
  type        = string
  default     = null

  validation {
    # CloudWatch cannot publish to FIFO topics.
    condition     = var.alarm_sns_topic_arn == null ? true : can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$", var.alarm_sns_topic_arn))
    error_message = "alarm_sns_topic_arn must be null or a standard (not FIFO) SNS topic ARN."
  }
}

variable "queue_age_alarm_seconds" {
  description = "Alarm when the oldest job has waited longer than this (ApproximateAgeOfOldestMessage); set it above the longest run you expect, since a plan enqueues every job at once."
  type        = number
  default     = 14400
  nullable    = false

  validation {
    condition     = var.queue_age_alarm_seconds >= 300 && var.queue_age_alarm_seconds <= 1209600 && floor(var.queue_age_alarm_seconds) == var.queue_age_alarm_seconds
    error_message = "queue_age_alarm_seconds must be a whole number from 300 to 1209600 (14 days, the retention)."
  }
}

variable "unhealthy_alarm_percent" {
  description = "Percentage of the desired capacity that must be out of service (desired minus in service) for a minute to count as unhealthy, for the unhealthy alarm."
  type        = number
  default     = 10
  nullable    = false

  validation {
    condition     = var.unhealthy_alarm_percent >= 1 && var.unhealthy_alarm_percent <= 100 && floor(var.unhealthy_alarm_percent) == var.unhealthy_alarm_percent
    error_message = "unhealthy_alarm_percent must be a whole number from 1 to 100."
  }
}

variable "unhealthy_alarm_minutes" {
  description = "Consecutive unhealthy minutes before the unhealthy alarm fires: it fails (and rolls back) a running instance refresh and notifies alarm_sns_topic_arn."
  type        = number
  default     = 10
  nullable    = false

  validation {
    condition     = var.unhealthy_alarm_minutes >= 3 && var.unhealthy_alarm_minutes <= 120 && floor(var.unhealthy_alarm_minutes) == var.unhealthy_alarm_minutes
    error_message = "unhealthy_alarm_minutes must be a whole number from 3 to 120."
  }
}

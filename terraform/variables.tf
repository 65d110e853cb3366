# Every input has a type, a description and a validation, so mistakes stop at
# plan time rather than on a booting instance. Agent settings mirror docs/config.md
# and are checked again by terraform/modules/userdata.

variable "name" {
  description = "Name of the fleet: prefix for every resource and the value of the rangefleet:fleet tag."
  type        = string

  validation {
    # SQS queue names allow 80 characters; "-jobs"/"-dlq" and friends are appended.
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,37}[a-z0-9]$", var.name))
    error_message = "name must be 2 to 39 lowercase letters, digits or hyphens, starting and ending with a letter or digit."
  }
}

variable "subnet_ids" {
  description = "Subnets the auto-scaling group launches into (spread them over several AZs for spot capacity); all in one VPC."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "subnet_ids must be a non-empty list of subnet IDs (subnet-…)."
  }
}

variable "ami_id" {
  description = "AMI to launch; null uses the latest Amazon Linux 2023 x86_64 AMI from the public SSM parameter."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null ? true : can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must be null or an AMI ID (ami-…)."
  }
}

variable "ami_ssm_parameter" {
  description = "Public SSM parameter naming the AMI when ami_id is null."
  type        = string
  default     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"

  validation {
    condition     = startswith(var.ami_ssm_parameter, "/aws/service/") && !strcontains(var.ami_ssm_parameter, "arm64")
    error_message = "ami_ssm_parameter must be a public /aws/service/ parameter for an x86_64 AMI."
  }
}

variable "root_device_name" {
  description = "Root device name of the AMI (/dev/xvda on Amazon Linux 2023)."
  type        = string
  default     = "/dev/xvda"

  validation {
    condition     = can(regex("^/dev/(xvd|sd|nvme)[a-z0-9]+$", var.root_device_name))
    error_message = "root_device_name must look like /dev/xvda or /dev/sda1."
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

variable "backlog_per_instance" {
  description = "Visible messages one instance is expected to work through; sets the scale-out steps."
  type        = number
  default     = 50

  validation {
    condition     = var.backlog_per_instance >= 1 && floor(var.backlog_per_instance) == var.backlog_per_instance
    error_message = "backlog_per_instance must be a whole number of at least 1."
  }
}

variable "scale_in_idle_minutes" {
  description = "Minutes the queue must be empty (nothing visible or in flight) before the fleet scales to zero."
  type        = number
  default     = 15

  validation {
    condition     = var.scale_in_idle_minutes >= 1 && var.scale_in_idle_minutes <= 1440 && floor(var.scale_in_idle_minutes) == var.scale_in_idle_minutes
    error_message = "scale_in_idle_minutes must be a whole number from 1 to 1440."
  }
}

variable "termination_hook_heartbeat_seconds" {
  description = "How long a terminating instance may drain before the lifecycle hook times out and termination continues."
  type        = number
  default     = 180

  validation {
    # The agent drains within 90 s of the notice; 120 s is the floor so scale-in
    # never cuts it shorter than a spot interruption would.
    condition     = var.termination_hook_heartbeat_seconds >= 120 && var.termination_hook_heartbeat_seconds <= 7200 && floor(var.termination_hook_heartbeat_seconds) == var.termination_hook_heartbeat_seconds
    error_message = "termination_hook_heartbeat_seconds must be a whole number from 120 to 7200."
  }
}

variable "root_volume_size_gb" {
  description = "Size of the encrypted gp3 root volume in GiB."
  type        = number
  default     = 16

  validation {
    condition     = var.root_volume_size_gb >= 8 && var.root_volume_size_gb <= 16384 && floor(var.root_volume_size_gb) == var.root_volume_size_gb
    error_message = "root_volume_size_gb must be a whole number from 8 to 16384."
  }
}

variable "ebs_kms_key_arn" {
  description = "KMS key for the root volume; null uses the account's default EBS key (still encrypted)."
  type        = string
  default     = null

  validation {
    condition     = var.ebs_kms_key_arn == null ? true : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/.+$", var.ebs_kms_key_arn))
    error_message = "ebs_kms_key_arn must be null or a KMS key or alias ARN."
  }
}

variable "detailed_monitoring" {
  description = "Enable one-minute EC2 detailed monitoring on instances (extra CloudWatch cost)."
  type        = bool
  default     = true
  nullable    = false

  validation {
    condition     = var.detailed_monitoring == true || var.detailed_monitoring == false
    error_message = "detailed_monitoring must be true or false."
  }
}

variable "egress_cidr_blocks" {
  description = "IPv4 ranges instances may reach on TCP 443 (S3, SQS, EC2 and the agent download); IMDS and the VPC resolver are not filtered by security groups."
  type        = list(string)
  default     = ["0.0.0.0/0"]
  nullable    = false

  validation {
    condition     = alltrue([for c in var.egress_cidr_blocks : can(cidrnetmask(c))])
    error_message = "egress_cidr_blocks must be IPv4 CIDR blocks."
  }
}

variable "inputs" {
  description = "s3://bucket/prefix/ source prefixes instances may read (the agent's allow-list and the role's s3:GetObject scope)."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.inputs) > 0 && alltrue([for u in var.inputs : can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\\S*)?$", u))])
    error_message = "inputs must be a non-empty list of s3://bucket/prefix URLs."
  }
}

variable "results" {
  description = "s3://bucket/prefix/ where instances write result documents (the role's only s3:PutObject scope)."
  type        = string

  validation {
    condition     = can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\\S*)?$", var.results))
    error_message = "results must be an s3://bucket/prefix URL."
  }
}

variable "s3_kms_key_arns" {
  description = "KMS keys encrypting the input or result objects (SSE-KMS); the role gets kms:Decrypt and kms:GenerateDataKey on exactly these."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for k in var.s3_kms_key_arns : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", k))])
    error_message = "s3_kms_key_arns must be KMS key ARNs."
  }
}

variable "concurrency" {
  description = "Jobs in flight per instance; null leaves the agent default (2 x vCPUs)."
  type        = number
  default     = null

  validation {
    condition     = var.concurrency == null ? true : (var.concurrency >= 1 && var.concurrency <= 1024 && floor(var.concurrency) == var.concurrency)
    error_message = "concurrency must be null or a whole number from 1 to 1024."
  }
}

variable "lease_seconds" {
  description = "Job lease in seconds: the agent's lease and the queue's visibility timeout."
  type        = number
  default     = 300

  validation {
    condition     = var.lease_seconds >= 30 && var.lease_seconds <= 43200 && floor(var.lease_seconds) == var.lease_seconds
    error_message = "lease_seconds must be a whole number from 30 to 43200."
  }
}

variable "tags" {
  description = "Fleet tags. Plain values are set at launch on instances, volumes and network interfaces; values with {instance_id}-style templates only reach the agent (and EC2 when publish_tags)."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition = length(var.tags) <= 49 && alltrue([
      for k, v in var.tags :
      length(k) >= 1 && length(k) <= 128 && length(v) <= 256 &&
      !startswith(lower(k), "aws:") &&
      can(regex("^[\\p{L}\\p{N}+\\-=._:@]+$", k))
    ])
    error_message = "at most 49 tags (one is kept for rangefleet:fleet); keys 1-128 letters, digits or + - = . _ : @, not starting with aws:; values at most 256 characters."
  }
}

variable "spot" {
  description = "Interruption handling: poll_seconds, on_rebalance (ignore | stop-leasing | drain), drain_margin_seconds."
  type = object({
    poll_seconds         = optional(number, 5)
    on_rebalance         = optional(string, "stop-leasing")
    drain_margin_seconds = optional(number, 20)
  })
  default  = {}
  nullable = false

  validation {
    condition     = contains(["ignore", "stop-leasing", "drain"], var.spot.on_rebalance) && var.spot.poll_seconds >= 1 && var.spot.poll_seconds <= 60 && var.spot.drain_margin_seconds >= 0 && var.spot.drain_margin_seconds <= 110
    error_message = "spot.on_rebalance must be ignore, stop-leasing or drain; poll_seconds 1-60; drain_margin_seconds 0-110."
  }
}

variable "processors" {
  description = "Processor settings; set exec only if jobs may name the exec processor (its argv must already be on the AMI)."
  type = object({
    exec = optional(object({
      argv             = list(string)
      timeout_seconds  = optional(number)
      max_output_bytes = optional(number)
    }))
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.processors.exec == null ? true : try(length(var.processors.exec.argv) > 0 && startswith(var.processors.exec.argv[0], "/"), false)
    error_message = "processors.exec.argv must be non-empty and start with an absolute path."
  }
}

variable "publish_tags" {
  description = "Let each instance set its own templated tags (e.g. Name=worker-{instance_id}) with ec2:CreateTags, scoped by IAM to that instance."
  type        = bool
  default     = false
  nullable    = false

  validation {
    condition     = var.publish_tags == true || var.publish_tags == false
    error_message = "publish_tags must be true or false."
  }
}

variable "agent_url" {
  description = "Where instances download the rangefleet binary: https://… or s3://bucket/key (s3 gives the role s3:GetObject on that key)."
  type        = string

  validation {
    condition     = can(regex("^(https://[^\\s/]+/\\S+|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\\S+)$", var.agent_url))
    error_message = "agent_url must be an https:// URL or s3://bucket/key."
  }
}

variable "agent_sha256" {
  description = "Lowercase hex sha256 of the binary (dist/rangefleet-x86_64-linux.sha256); instances install nothing on a mismatch."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.agent_sha256))
    error_message = "agent_sha256 must be 64 lowercase hex characters."
  }
}

variable "enable_ssm" {
  description = "Attach AmazonSSMManagedInstanceCore so operators can use Session Manager instead of SSH."
  type        = bool
  default     = false
  nullable    = false

  validation {
    condition     = var.enable_ssm == true || var.enable_ssm == false
    error_message = "enable_ssm must be true or false."
  }
}

variable "s3_gateway_endpoint_route_table_ids" {
  description = "Create an S3 gateway VPC endpoint on these route tables (free, keeps S3 traffic off NAT); empty creates none."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for r in var.s3_gateway_endpoint_route_table_ids : can(regex("^rtb-[0-9a-f]{8,17}$", r))])
    error_message = "s3_gateway_endpoint_route_table_ids must be route table IDs (rtb-…)."
  }
}

variable "queue_message_retention_seconds" {
  description = "How long SQS keeps job messages before discarding them; the dead-letter queue always keeps 14 days, the SQS maximum."
  type        = number
  default     = 1209600

  validation {
    condition     = var.queue_message_retention_seconds >= 60 && var.queue_message_retention_seconds <= 1209600 && floor(var.queue_message_retention_seconds) == var.queue_message_retention_seconds
    error_message = "queue_message_retention_seconds must be a whole number from 60 to 1209600."
  }
}

variable "sqs_kms_key_id" {
  description = "KMS key (ID, ARN or alias) for SQS encryption; null uses SQS-managed SSE."
  type        = string
  default     = null

  validation {
    condition     = var.sqs_kms_key_id == null ? true : length(var.sqs_kms_key_id) > 0
    error_message = "sqs_kms_key_id must be null or a KMS key ID, ARN or alias."
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

variable "journal_log_group" {
  description = "Ship each instance's agent journal to CloudWatch Logs (one stream per instance id): with a name, the module makes that log group (retention_in_days; optional kms_key_arn), lets the instances CreateLogStream and PutLogEvents on that group only, and starts rangefleet-journal-cloudwatch.service on them. Without a name (the default) nothing is shipped."
  type = object({
    name              = optional(string)
    retention_in_days = optional(number, 30)
    kms_key_arn       = optional(string)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.journal_log_group.name == null ? true : can(regex("^[A-Za-z0-9_/.#-]{1,512}$", var.journal_log_group.name))
    error_message = "journal_log_group.name must be null or 1 to 512 of A-Z a-z 0-9 _ - / . #."
  }
  validation {
    # The values CloudWatch Logs accepts.
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], coalesce(var.journal_log_group.retention_in_days, 30))
    error_message = "journal_log_group.retention_in_days must be one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
  validation {
    condition     = var.journal_log_group.kms_key_arn == null ? true : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.journal_log_group.kms_key_arn))
    error_message = "journal_log_group.kms_key_arn must be null or a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)."
  }
}

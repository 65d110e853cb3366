# Inputs mirror the agent config, version 1 (docs/config.md). The checks
# here catch mistakes at plan time; the agent validates the same rules again
# when it boots.

variable "queue" {
  description = "Job queue: an SQS queue URL (any http(s) URL) or sqlite:///path for one machine."
  type        = string

  validation {
    condition     = length(trimspace(var.queue)) > 0
    error_message = "queue must not be empty."
  }
  validation {
    condition     = can(regex("^(https?://[^\\s/]+/\\S*|sqlite:///\\S+)$", var.queue))
    error_message = "queue must be an http(s) queue URL or sqlite:///path."
  }
}

variable "inputs" {
  description = "Allow-list of source prefixes the agent may read (s3://bucket/prefix/ or file:///path/)."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.inputs) > 0
    error_message = "inputs must name at least one prefix."
  }
  validation {
    condition = alltrue([
      for u in var.inputs : can(regex("^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\\S*)?|file:///\\S*)$", u))
    ])
    error_message = "each input must be an s3://bucket/prefix or file:///path URL."
  }
}

variable "results" {
  description = "Prefix for result documents (s3://bucket/prefix/ or file:///path/)."
  type        = string

  validation {
    condition     = can(regex("^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\\S*)?|file:///\\S*)$", var.results))
    error_message = "results must be an s3://bucket/prefix or file:///path URL."
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
  description = "Visibility timeout of one lease, in seconds; the agent heartbeats at a third of it."
  type        = number
  default     = 300
  nullable    = false

  validation {
    # SQS caps visibility at 12 hours.
    condition     = var.lease_seconds >= 30 && var.lease_seconds <= 43200 && floor(var.lease_seconds) == var.lease_seconds
    error_message = "lease_seconds must be a whole number from 30 to 43200."
  }
}

variable "tags" {
  description = "Tags the agent reports and, with publish_tags, sets; values may use {instance_id} {launch_index} {availability_zone} {instance_type} {region}."
  type        = map(string)
  default     = {}
  nullable    = false

  validation {
    condition     = length(var.tags) <= 50
    error_message = "at most 50 tags."
  }
  validation {
    condition     = alltrue([for k in keys(var.tags) : length(k) >= 1 && length(k) <= 128])
    error_message = "tag keys must be 1 to 128 characters."
  }
  validation {
    condition     = alltrue([for v in values(var.tags) : length(v) <= 256])
    error_message = "tag values must be at most 256 characters."
  }
  validation {
    condition     = alltrue([for k in keys(var.tags) : !startswith(lower(k), "aws:")])
    error_message = "tag keys must not start with aws: (reserved by AWS)."
  }
  validation {
    # Instance metadata tags (enabled on the launch template) allow only these.
    condition     = alltrue([for k in keys(var.tags) : can(regex("^[\\p{L}\\p{N}+\\-=._:@]+$", k)) && !contains([".", "..", "_index"], k)])
    error_message = "tag keys may use only letters, digits and + - = . _ : @ (and not be \".\", \"..\" or \"_index\")."
  }
}

variable "spot" {
  description = "Interruption handling: poll interval, what a rebalance recommendation does, and the drain margin."
  type = object({
    poll_seconds         = optional(number, 5)
    on_rebalance         = optional(string, "stop-leasing")
    drain_margin_seconds = optional(number, 20)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.spot.poll_seconds >= 1 && var.spot.poll_seconds <= 60 && floor(var.spot.poll_seconds) == var.spot.poll_seconds
    error_message = "spot.poll_seconds must be a whole number from 1 to 60."
  }
  validation {
    condition     = contains(["ignore", "stop-leasing", "drain"], var.spot.on_rebalance)
    error_message = "spot.on_rebalance must be ignore, stop-leasing or drain."
  }
  validation {
    condition     = var.spot.drain_margin_seconds >= 0 && var.spot.drain_margin_seconds <= 110 && floor(var.spot.drain_margin_seconds) == var.spot.drain_margin_seconds
    error_message = "spot.drain_margin_seconds must be a whole number from 0 to 110."
  }
}

variable "processors" {
  description = "Processor settings; exec is needed only if jobs may name the exec processor (null fields keep agent defaults)."
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
  validation {
    condition     = var.processors.exec == null ? true : (var.processors.exec.timeout_seconds == null ? true : var.processors.exec.timeout_seconds >= 1)
    error_message = "processors.exec.timeout_seconds must be at least 1."
  }
  validation {
    condition     = var.processors.exec == null ? true : (var.processors.exec.max_output_bytes == null ? true : var.processors.exec.max_output_bytes >= 1)
    error_message = "processors.exec.max_output_bytes must be at least 1."
  }
}

variable "publish_tags" {
  description = "Let the agent set its templated per-instance tags with ec2:CreateTags (rate-limited, off the boot path)."
  type        = bool
  default     = false
  nullable    = false
}

variable "agent_url" {
  description = "Where instances download the rangefleet binary: https://… or s3://bucket/key."
  type        = string

  validation {
    condition     = can(regex("^(https://[^\\s/]+/\\S+|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\\S+)$", var.agent_url))
    error_message = "agent_url must be an https:// URL or s3://bucket/key."
  }
}

variable "agent_sha256" {
  description = "Lowercase hex sha256 of the binary at agent_url; instances install nothing on a mismatch."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.agent_sha256))
    error_message = "agent_sha256 must be 64 lowercase hex characters."
  }
}

variable "journal_cloudwatch" {
  description = "Ship the agent's journal to the CloudWatch Logs group log_group (made by the caller) in region: installs python3-botocore, writes /etc/rangefleet/journal-cloudwatch.ini and starts rangefleet-journal-cloudwatch.service. Without a log_group (the default) nothing is shipped."
  type = object({
    log_group = optional(string)
    region    = optional(string)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.journal_cloudwatch.log_group == null ? true : can(regex("^[A-Za-z0-9_/.#-]{1,512}$", var.journal_cloudwatch.log_group))
    error_message = "journal_cloudwatch.log_group must be 1 to 512 of A-Z a-z 0-9 _ - / . #."
  }
  validation {
    condition     = var.journal_cloudwatch.log_group == null ? true : can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.journal_cloudwatch.region))
    error_message = "journal_cloudwatch.region must be a region name such as us-east-1 when log_group is set."
  }
}

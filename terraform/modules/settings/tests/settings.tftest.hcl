# Offline tests of the root module's input rules: `terraform init
# -backend=false && terraform test` in terraform/modules/settings.

run "defaults_are_valid_and_all_spot" {
  command = apply

  assert {
    condition     = length(output.instance_types) == 10 && output.instance_requirements == null
    error_message = "the default is the instance type list, without attribute-based selection."
  }
  assert {
    condition     = output.instances_distribution.on_demand_base_capacity == 0 && output.instances_distribution.on_demand_percentage_above_base_capacity == 0
    error_message = "the default fleet must be all spot."
  }
  assert {
    condition     = output.instance_profile.create && output.instance_profile.arn == null && output.instance_profile.name == null
    error_message = "the module creates its own instance profile by default."
  }
  assert {
    condition     = length(output.alarm_actions) == 0 && output.alarms.queue_age_seconds == 14400 && output.alarms.unhealthy_minutes == 10 && output.alarms.unhealthy_percent == 10
    error_message = "alarm defaults changed."
  }
}

run "null_lists_become_their_defaults" {
  # nullable = false: a caller's null never reaches the module.
  command = apply

  variables {
    instance_types        = null
    security_group_ids    = null
    instance_requirements = null
  }

  assert {
    condition     = length(output.instance_types) == 10 && length(output.security_group_ids) == 0 && output.instance_requirements == null
    error_message = "null must fall back to the default."
  }
}

run "instance_requirements_instead_of_types" {
  command = apply

  variables {
    instance_types = []
    instance_requirements = {
      vcpu_count = { min = 2, max = 8 }
      memory_mib = { min = 4096 }
    }
  }

  assert {
    condition     = output.instance_requirements.vcpu_count.min == 2 && output.instance_requirements.memory_mib.max == null
    error_message = "requirements did not pass through."
  }
  assert {
    condition     = output.instance_requirements.cpu_manufacturers == tolist(["intel", "amd"])
    error_message = "cpu_manufacturers must default to intel and amd (x86_64)."
  }
  assert {
    condition     = length(output.instance_types) == 0
    error_message = "no instance type overrides with attribute-based selection."
  }
}

run "types_and_requirements_together_rejected" {
  command = plan

  variables {
    instance_requirements = {
      vcpu_count = { min = 2 }
      memory_mib = { min = 4096 }
    }
  }

  expect_failures = [output.instance_types]
}

run "neither_types_nor_requirements_rejected" {
  command = plan

  variables {
    instance_types = []
  }

  expect_failures = [output.instance_types]
}

run "requirements_need_vcpu_and_memory" {
  command = plan

  variables {
    instance_types        = []
    instance_requirements = { vcpu_count = { min = 2 } }
  }

  expect_failures = [var.instance_requirements]
}

run "graviton_manufacturer_rejected" {
  command = plan

  variables {
    instance_types = []
    instance_requirements = {
      vcpu_count        = { min = 2 }
      memory_mib        = { min = 4096 }
      cpu_manufacturers = ["amazon-web-services"]
    }
  }

  expect_failures = [var.instance_requirements]
}

run "requirement_max_below_min_rejected" {
  command = plan

  variables {
    instance_types = []
    instance_requirements = {
      vcpu_count = { min = 8, max = 4 }
      memory_mib = { min = 4096 }
    }
  }

  expect_failures = [var.instance_requirements]
}

run "allowed_and_excluded_types_rejected" {
  command = plan

  variables {
    instance_types = []
    instance_requirements = {
      vcpu_count              = { min = 2 }
      memory_mib              = { min = 4096 }
      allowed_instance_types  = ["m5*"]
      excluded_instance_types = ["m5.24xlarge"]
    }
  }

  expect_failures = [var.instance_requirements]
}

run "arm64_instance_type_rejected" {
  command = plan

  variables {
    instance_types = ["m5.large", "m6g.large"]
  }

  expect_failures = [var.instance_types]
}

run "on_demand_base_and_percentage" {
  command = apply

  variables {
    on_demand_base_capacity                  = 2
    on_demand_percentage_above_base_capacity = 25
  }

  assert {
    condition     = output.instances_distribution.on_demand_base_capacity == 2 && output.instances_distribution.on_demand_percentage_above_base_capacity == 25
    error_message = "on-demand settings did not pass through."
  }
}

run "on_demand_percentage_over_100_rejected" {
  command = plan

  variables {
    on_demand_percentage_above_base_capacity = 101
  }

  expect_failures = [var.on_demand_percentage_above_base_capacity]
}

run "on_demand_base_above_max_size_rejected" {
  command = plan

  variables {
    max_size                = 4
    on_demand_base_capacity = 5
  }

  expect_failures = [output.instances_distribution]
}

run "own_instance_profile_by_arn" {
  command = apply

  variables {
    create_iam_instance_profile = false
    iam_instance_profile_arn    = "arn:aws:iam::123456789012:instance-profile/fleet/workers"
  }

  assert {
    condition     = !output.instance_profile.create && output.instance_profile.arn == "arn:aws:iam::123456789012:instance-profile/fleet/workers" && output.instance_profile.name == null
    error_message = "the given instance profile ARN must be used."
  }
}

run "own_instance_profile_by_name" {
  command = apply

  variables {
    create_iam_instance_profile = false
    iam_instance_profile_name   = "fleet-workers"
  }

  assert {
    condition     = output.instance_profile.name == "fleet-workers" && output.instance_profile.arn == null
    error_message = "the given instance profile name must be used."
  }
}

run "own_instance_profile_missing_rejected" {
  command = plan

  variables {
    create_iam_instance_profile = false
  }

  expect_failures = [output.instance_profile]
}

run "own_instance_profile_arn_and_name_rejected" {
  command = plan

  variables {
    create_iam_instance_profile = false
    iam_instance_profile_arn    = "arn:aws:iam::123456789012:instance-profile/workers"
    iam_instance_profile_name   = "workers"
  }

  expect_failures = [output.instance_profile]
}

run "instance_profile_given_while_creating_rejected" {
  command = plan

  variables {
    iam_instance_profile_name = "workers"
  }

  expect_failures = [output.instance_profile]
}

run "role_settings_without_a_role_rejected" {
  command = plan

  variables {
    create_iam_instance_profile   = false
    iam_instance_profile_name     = "workers"
    iam_role_permissions_boundary = "arn:aws:iam::123456789012:policy/boundary"
  }

  expect_failures = [output.iam_role]
}

run "bad_instance_profile_arn_rejected" {
  command = plan

  variables {
    create_iam_instance_profile = false
    iam_instance_profile_arn    = "arn:aws:iam::123456789012:role/workers"
  }

  expect_failures = [var.iam_instance_profile_arn]
}

run "role_path_and_boundary" {
  command = apply

  variables {
    iam_role_path                 = "/rangefleet/"
    iam_role_permissions_boundary = "arn:aws:iam::123456789012:policy/fleet-boundary"
  }

  assert {
    condition     = output.iam_role.path == "/rangefleet/" && output.iam_role.permissions_boundary == "arn:aws:iam::123456789012:policy/fleet-boundary"
    error_message = "role path or boundary did not pass through."
  }
}

run "bad_role_path_rejected" {
  command = plan

  variables {
    iam_role_path = "rangefleet"
  }

  expect_failures = [var.iam_role_path]
}

run "bad_permissions_boundary_rejected" {
  command = plan

  variables {
    iam_role_permissions_boundary = "arn:aws:iam::123456789012:role/boundary"
  }

  expect_failures = [var.iam_role_permissions_boundary]
}

run "extra_security_groups" {
  command = apply

  variables {
    security_group_ids = ["sg-0123456789abcdef0", "sg-0fedcba9876543210"]
  }

  assert {
    condition     = output.security_group_ids == tolist(["sg-0123456789abcdef0", "sg-0fedcba9876543210"])
    error_message = "security groups did not pass through in order."
  }
}

run "bad_or_duplicate_security_groups_rejected" {
  command = plan

  variables {
    security_group_ids = ["sg-0123456789abcdef0", "sg-0123456789abcdef0", "vpc-0123456789abcdef0"]
  }

  expect_failures = [var.security_group_ids]
}

run "sns_topic_is_the_alarm_action" {
  command = apply

  variables {
    alarm_sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:rangefleet-alerts"
  }

  assert {
    condition     = one(output.alarm_actions) == "arn:aws:sns:us-east-1:123456789012:rangefleet-alerts"
    error_message = "the topic must be the only alarm action."
  }
}

run "fifo_topic_rejected" {
  command = plan

  variables {
    alarm_sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:alerts.fifo"
  }

  expect_failures = [var.alarm_sns_topic_arn]
}

run "alarm_thresholds_bounded" {
  command = plan

  variables {
    queue_age_alarm_seconds = 60
    unhealthy_alarm_percent = 0
    unhealthy_alarm_minutes = 1
  }

  expect_failures = [var.queue_age_alarm_seconds, var.unhealthy_alarm_percent, var.unhealthy_alarm_minutes]
}

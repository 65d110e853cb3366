# Launch template and the spot auto-scaling group.

resource "aws_launch_template" "agent" {
  name_prefix            = "${var.name}-"
  description            = "rangefleet ${var.name} spot workers"
  image_id               = local.ami_id
  update_default_version = true
  user_data              = module.userdata.user_data_base64gzip
  vpc_security_group_ids = concat([aws_security_group.agent.id], module.settings.security_group_ids)
  ebs_optimized          = true
  # The agent's last resort when it cannot even tell Auto Scaling it is
  # unhealthy is to power the instance off: terminate rather than stop, so
  # the group sees it gone and replaces it (a stopped instance would wait for
  # the next EC2 health check and keep its volume).
  instance_initiated_shutdown_behavior = "terminate"

  # The module's own profile, or the one given (by ARN or by name).
  iam_instance_profile {
    arn  = local.instance_profile_arn
    name = local.instance_profile_name
  }

  # IMDSv2 only, one hop (containers on the host cannot reach it), and tags
  # readable from IMDS so the agent learns them with no EC2 API call.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }

  block_device_mappings {
    device_name = var.root_device_name
    ebs {
      volume_size           = var.root_volume_size_gb
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.ebs_kms_key_arn
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = var.detailed_monitoring
  }

  # Tags at launch, once, by EC2: no CreateTags storm from booting instances.
  tag_specifications {
    resource_type = "instance"
    tags          = local.launch_tags
  }
  tag_specifications {
    resource_type = "volume"
    tags          = local.launch_tags
  }
  tag_specifications {
    resource_type = "network-interface"
    tags          = local.launch_tags
  }

  tags = local.launch_tags
}

resource "aws_autoscaling_group" "agent" {
  name_prefix         = "${var.name}-"
  vpc_zone_identifier = var.subnet_ids
  min_size            = 0
  max_size            = var.max_size
  # desired_capacity is left to the scaling policies (see scaling.tf).
  capacity_rebalance        = true
  health_check_type         = "EC2"
  health_check_grace_period = 180
  default_instance_warmup   = 180
  metrics_granularity       = "1Minute"
  enabled_metrics = [
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
  ]

  mixed_instances_policy {
    # Spot by default; an optional on-demand floor (on_demand_base_capacity)
    # and share above it. lowest-price: the type list has no order to honour,
    # and attribute-based selection allows nothing else.
    instances_distribution {
      on_demand_allocation_strategy            = "lowest-price"
      on_demand_base_capacity                  = module.settings.instances_distribution.on_demand_base_capacity
      on_demand_percentage_above_base_capacity = module.settings.instances_distribution.on_demand_percentage_above_base_capacity
      spot_allocation_strategy                 = "price-capacity-optimized"
    }

    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.agent.id
        version            = aws_launch_template.agent.latest_version
      }

      # Exactly one of the two (modules/settings checks it): a list of
      # instance types, or one set of attribute-based requirements.
      dynamic "override" {
        for_each = module.settings.instance_types
        content {
          instance_type = override.value
        }
      }

      dynamic "override" {
        for_each = module.settings.instance_requirements == null ? [] : [module.settings.instance_requirements]
        content {
          instance_requirements {
            vcpu_count {
              min = override.value.vcpu_count.min
              max = override.value.vcpu_count.max
            }
            memory_mib {
              min = override.value.memory_mib.min
              max = override.value.memory_mib.max
            }
            dynamic "memory_gib_per_vcpu" {
              for_each = override.value.memory_gib_per_vcpu == null ? [] : [override.value.memory_gib_per_vcpu]
              content {
                min = memory_gib_per_vcpu.value.min
                max = memory_gib_per_vcpu.value.max
              }
            }
            dynamic "network_bandwidth_gbps" {
              for_each = override.value.network_bandwidth_gbps == null ? [] : [override.value.network_bandwidth_gbps]
              content {
                min = network_bandwidth_gbps.value.min
                max = network_bandwidth_gbps.value.max
              }
            }
            cpu_manufacturers                           = override.value.cpu_manufacturers
            instance_generations                        = override.value.instance_generations
            allowed_instance_types                      = override.value.allowed_instance_types
            excluded_instance_types                     = override.value.excluded_instance_types
            burstable_performance                       = override.value.burstable_performance
            bare_metal                                  = override.value.bare_metal
            local_storage                               = override.value.local_storage
            spot_max_price_percentage_over_lowest_price = override.value.spot_max_price_percentage_over_lowest_price
          }
        }
      }
    }
  }

  # The drain hook is aws_autoscaling_lifecycle_hook.drain below, not an
  # initial_lifecycle_hook (read only when the group is created).

  # A new launch template version (new binary, config or AMI) rolls the fleet,
  # half of it at a time. The unhealthy alarm (alarms.tf) fails the refresh:
  # a bad version stops after its first batch. auto_rollback then replaces
  # that batch with the group's saved configuration; see docs/launch.md for
  # what that restores when Terraform started the refresh.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 50
      instance_warmup        = 180
      skip_matching          = true
      auto_rollback          = true
      alarm_specification {
        alarms = [local.unhealthy_alarm_name]
      }
    }
  }

  dynamic "tag" {
    for_each = local.launch_tags
    content {
      key   = tag.key
      value = tag.value
      # The launch template already tags instances at launch.
      propagate_at_launch = false
    }
  }

  lifecycle {
    # initial_lifecycle_hook: groups made by earlier versions of this module
    # have one in state; dropping it from the configuration must not replace
    # the group (the argument forces a new group). The hook itself lives on as
    # aws_autoscaling_lifecycle_hook.drain, which adopts it by name.
    ignore_changes = [desired_capacity, initial_lifecycle_hook]
  }
}

# Scale-in, instance refresh and health replacements wait here while the agent
# drains (it sees autoscaling/target-lifecycle-state in IMDS). The agent
# completes the action itself once drained (CompleteLifecycleAction, CONTINUE);
# the heartbeat timeout is the backstop for an agent that cannot, and then
# termination continues too. A separate resource, so a changed heartbeat
# applies to the existing group.
resource "aws_autoscaling_lifecycle_hook" "drain" {
  name                   = local.drain_hook_name
  autoscaling_group_name = aws_autoscaling_group.agent.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = var.termination_hook_heartbeat_seconds
  default_result         = "CONTINUE"
}

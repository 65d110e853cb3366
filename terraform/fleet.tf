# Launch template and the spot auto-scaling group.

resource "aws_launch_template" "agent" {
  name_prefix            = "${var.name}-"
  description            = "rangefleet ${var.name} spot workers"
  image_id               = local.ami_id
  update_default_version = true
  user_data              = module.userdata.user_data_base64gzip
  vpc_security_group_ids = [aws_security_group.agent.id]
  ebs_optimized          = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.agent.arn
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
    instances_distribution {
      on_demand_base_capacity                  = 0
      on_demand_percentage_above_base_capacity = 0
      spot_allocation_strategy                 = "price-capacity-optimized"
    }

    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.agent.id
        version            = aws_launch_template.agent.latest_version
      }

      dynamic "override" {
        for_each = var.instance_types
        content {
          instance_type = override.value
        }
      }
    }
  }

  # Scale-in and instance refresh wait here while the agent drains (it sees
  # autoscaling/target-lifecycle-state in IMDS); CONTINUE when time runs out.
  initial_lifecycle_hook {
    name                 = "rangefleet-drain"
    lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
    heartbeat_timeout    = var.termination_hook_heartbeat_seconds
    default_result       = "CONTINUE"
  }

  # A new launch template version (new binary, config or AMI) rolls the fleet.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 50
      instance_warmup        = 180
      skip_matching          = true
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
    ignore_changes = [desired_capacity]
  }
}

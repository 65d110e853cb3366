# Scale on the queue's backlog: out in steps while messages wait, and to zero
# once nothing has been visible or in flight for scale_in_idle_minutes.

locals {
  b = var.backlog_per_instance
}

resource "aws_autoscaling_policy" "scale_out" {
  name                      = "${var.name}-backlog-out"
  autoscaling_group_name    = aws_autoscaling_group.agent.name
  policy_type               = "StepScaling"
  adjustment_type           = "ChangeInCapacity"
  metric_aggregation_type   = "Maximum"
  estimated_instance_warmup = 180

  # Bounds are relative to the alarm threshold (0 visible messages).
  step_adjustment {
    metric_interval_lower_bound = 0
    metric_interval_upper_bound = local.b
    scaling_adjustment          = 1
  }
  step_adjustment {
    metric_interval_lower_bound = local.b
    metric_interval_upper_bound = 10 * local.b
    scaling_adjustment          = max(2, ceil(var.max_size / 10))
  }
  step_adjustment {
    metric_interval_lower_bound = 10 * local.b
    scaling_adjustment          = max(4, ceil(var.max_size / 4))
  }
}

resource "aws_cloudwatch_metric_alarm" "backlog" {
  alarm_name          = "${var.name}-backlog"
  alarm_description   = "rangefleet ${var.name}: jobs waiting in ${aws_sqs_queue.jobs.name}; scale out"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.jobs.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_autoscaling_policy.scale_out.arn]
  tags                = local.launch_tags
}

resource "aws_autoscaling_policy" "scale_in" {
  name                   = "${var.name}-idle-in"
  autoscaling_group_name = aws_autoscaling_group.agent.name
  policy_type            = "StepScaling"
  adjustment_type        = "ExactCapacity"

  step_adjustment {
    metric_interval_upper_bound = 0
    scaling_adjustment          = 0
  }
}

resource "aws_cloudwatch_metric_alarm" "idle" {
  alarm_name          = "${var.name}-idle"
  alarm_description   = "rangefleet ${var.name}: no job visible or in flight; scale to zero"
  comparison_operator = "LessThanOrEqualToThreshold"
  threshold           = 0
  evaluation_periods  = var.scale_in_idle_minutes
  datapoints_to_alarm = var.scale_in_idle_minutes
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_autoscaling_policy.scale_in.arn]
  tags                = local.launch_tags

  metric_query {
    id          = "backlog"
    expression  = "visible + inflight"
    label       = "Jobs visible or in flight"
    return_data = true
  }
  metric_query {
    id = "visible"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = aws_sqs_queue.jobs.name }
      stat        = "Maximum"
      period      = 60
    }
  }
  metric_query {
    id = "inflight"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesNotVisible"
      dimensions  = { QueueName = aws_sqs_queue.jobs.name }
      stat        = "Maximum"
      period      = 60
    }
  }
}

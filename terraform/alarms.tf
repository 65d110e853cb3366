# Operator alarms (docs/operations.md, "Fleet health runbook"). Each notifies
# alarm_sns_topic_arn, when set, on ALARM and on OK. The unhealthy alarm also
# guards instance refreshes (fleet.tf). CloudWatch bills $0.10 a month per
# metric an alarm reads: $0.10 each for the queue alarms, $0.20 for the
# unhealthy one (two metrics; the expression is free).

# Part of the fleet's desired capacity that is not in service. An agent that
# cannot work marks its instance Unhealthy (SetInstanceHealth), and an
# instance it could not even reach that far powers off, which the EC2 health
# check sees; either way the group terminates and replaces it, and while
# replacements keep failing, in-service stays below desired. Healthy churn (a
# spot replacement, one refresh batch draining and relaunching) lasts a few
# minutes; the alarm wants unhealthy_alarm_minutes in a row.
resource "aws_cloudwatch_metric_alarm" "unhealthy" {
  alarm_name          = local.unhealthy_alarm_name
  alarm_description   = "rangefleet ${var.name}: at least ${module.settings.alarms.unhealthy_percent}% of the desired instances out of service for ${module.settings.alarms.unhealthy_minutes} minutes (failing agents, failed launches or no spot capacity); fails a running instance refresh"
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = module.settings.alarms.unhealthy_percent
  evaluation_periods  = module.settings.alarms.unhealthy_minutes
  datapoints_to_alarm = module.settings.alarms.unhealthy_minutes
  # No data (metrics collection off, a brand-new group) is not a failure.
  treat_missing_data = "notBreaching"
  alarm_actions      = module.settings.alarm_actions
  ok_actions         = module.settings.alarm_actions
  tags               = local.launch_tags

  metric_query {
    id          = "short"
    expression  = "IF(desired > 0, 100 * (desired - inservice) / desired, 0)"
    label       = "Percent of desired capacity not in service"
    return_data = true
  }
  metric_query {
    id = "desired"
    metric {
      namespace   = "AWS/AutoScaling"
      metric_name = "GroupDesiredCapacity"
      dimensions  = { AutoScalingGroupName = aws_autoscaling_group.agent.name }
      stat        = "Maximum"
      period      = 60
    }
  }
  metric_query {
    # The lowest count in the minute: a gap anywhere in it counts.
    id = "inservice"
    metric {
      namespace   = "AWS/AutoScaling"
      metric_name = "GroupInServiceInstances"
      dimensions  = { AutoScalingGroupName = aws_autoscaling_group.agent.name }
      stat        = "Minimum"
      period      = 60
    }
  }
}

# Any dead letter: a job the agent refused or that failed five times (or
# twenty receives, the redrive backstop). It needs a person either way.
resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name          = "${var.name}-dead-letters"
  alarm_description   = "rangefleet ${var.name}: jobs in the dead-letter queue ${aws_sqs_queue.dlq.name}; read their rangefleet.reason, fix, redrive"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = module.settings.alarm_actions
  ok_actions          = module.settings.alarm_actions
  tags                = local.launch_tags
}

# The oldest job has waited too long: nothing is working the queue (no
# capacity, every agent failing) or the fleet is far too small for the plan.
resource "aws_cloudwatch_metric_alarm" "queue_age" {
  alarm_name          = "${var.name}-oldest-job"
  alarm_description   = "rangefleet ${var.name}: the oldest job in ${aws_sqs_queue.jobs.name} has waited over ${module.settings.alarms.queue_age_seconds} s"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.jobs.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = module.settings.alarms.queue_age_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = module.settings.alarm_actions
  ok_actions          = module.settings.alarm_actions
  tags                = local.launch_tags
}

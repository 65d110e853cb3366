# The job queue and its dead-letter queue. The agent dead-letters a job itself
# at its 5th receive; the redrive (20 receives) is the backstop, since releases
# count as receives too (docs/architecture.md#defaults).

# Dead letters wait for a person, so the DLQ keeps them as long as SQS allows
# (14 days), whatever the job queue's retention. Jobs the agent dead-letters
# are sent anew and get all 14 days; jobs moved by the redrive policy keep
# their first enqueue time, so their clock started on the job queue.
resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = var.sqs_kms_key_id == null ? true : null
  kms_master_key_id         = var.sqs_kms_key_id
  tags                      = local.launch_tags
}

resource "aws_sqs_queue" "jobs" {
  name                       = "${var.name}-jobs"
  visibility_timeout_seconds = var.lease_seconds
  message_retention_seconds  = var.queue_message_retention_seconds
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = var.sqs_kms_key_id == null ? true : null
  kms_master_key_id          = var.sqs_kms_key_id
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = 20
  })
  tags = local.launch_tags
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.jobs.arn]
  })
}

# Refuse plain-HTTP access to both queues.
data "aws_iam_policy_document" "queue_tls" {
  for_each = {
    jobs = aws_sqs_queue.jobs.arn
    dlq  = aws_sqs_queue.dlq.arn
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    resources = [each.value]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "jobs" {
  queue_url = aws_sqs_queue.jobs.id
  policy    = data.aws_iam_policy_document.queue_tls["jobs"].json
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.queue_tls["dlq"].json
}

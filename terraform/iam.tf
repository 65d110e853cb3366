# The instance role: exactly what the agent does, on exactly the fleet's
# resources. No statement has a "*" action, and the only "*" resource is
# autoscaling:DescribeAutoScalingInstances, which has no resource-level
# permissions at all.
#
# With create_iam_instance_profile = false the module creates none of this;
# the iam_policy_json output is the same policy, for the caller's own role.

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "Ec2AssumeRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "agent" {
  count = var.create_iam_instance_profile ? 1 : 0

  name_prefix          = "${var.name}-agent-"
  path                 = module.settings.iam_role.path
  permissions_boundary = module.settings.iam_role.permissions_boundary
  description          = "rangefleet ${var.name} agent instances"
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  tags                 = local.launch_tags
}

resource "aws_iam_instance_profile" "agent" {
  count = var.create_iam_instance_profile ? 1 : 0

  name_prefix = "${var.name}-agent-"
  path        = module.settings.iam_role.path
  role        = aws_iam_role.agent[0].name
  tags        = local.launch_tags
}

# Earlier versions created these unconditionally; keep them in place.
moved {
  from = aws_iam_role.agent
  to   = aws_iam_role.agent[0]
}

moved {
  from = aws_iam_instance_profile.agent
  to   = aws_iam_instance_profile.agent[0]
}

moved {
  from = aws_iam_role_policy.agent
  to   = aws_iam_role_policy.agent[0]
}

data "aws_iam_policy_document" "agent" {
  # The journal shipper's two calls (journal_log_group), on the fleet's own log
  # group and its streams only.
  dynamic "statement" {
    for_each = var.journal_log_group.name == null ? [] : [local.journal_log_group_arn]
    content {
      sid       = "ShipJournal"
      actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      resources = [statement.value, "${statement.value}:log-stream:*"]
    }
  }

  # Ranged GETs of job sources, only under the allow-listed prefixes.
  statement {
    sid       = "ReadInputs"
    actions   = ["s3:GetObject"]
    resources = distinct([for i in local.inputs : "arn:${local.partition}:s3:::${i.bucket}/${i.prefix}*"])
  }

  # ListBucket lets S3 answer 404 (a permanent "missing object") rather than
  # 403 (which the agent treats as a fault of its role) for a missing key.
  dynamic "statement" {
    for_each = local.input_buckets
    content {
      sid       = "ListInputs${index(local.input_buckets, statement.value)}"
      actions   = ["s3:ListBucket"]
      resources = ["arn:${local.partition}:s3:::${statement.value}"]
      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values = distinct(flatten([
          for i in local.inputs : [i.prefix, "${i.prefix}*"] if i.bucket == statement.value
        ]))
      }
    }
  }

  # Result documents and instance summaries, written create-only.
  statement {
    sid       = "WriteResults"
    actions   = ["s3:PutObject"]
    resources = ["arn:${local.partition}:s3:::${local.results.bucket}/${local.results.prefix}*"]
  }

  statement {
    sid = "LeaseJobs"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = [aws_sqs_queue.jobs.arn]
  }

  statement {
    sid       = "DeadLetter"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl"]
    resources = [aws_sqs_queue.dlq.arn]
  }

  # Fleet health (docs/launch.md): the agent completes the drain hook of its
  # own termination (RecordLifecycleActionHeartbeat while a drain runs long,
  # CompleteLifecycleAction when done) and marks its instance Unhealthy when
  # it cannot work. All three support resource-level permissions on the
  # autoScalingGroup resource type, so the resource is this group's ARN (it
  # holds the group's id, so a later group of the same name does not match).
  statement {
    sid = "OwnGroupLifecycle"
    actions = [
      "autoscaling:CompleteLifecycleAction",
      "autoscaling:RecordLifecycleActionHeartbeat",
      "autoscaling:SetInstanceHealth",
    ]
    resources = [aws_autoscaling_group.agent.arn]
  }

  # The agent learns its group's name from its instance id. This action has
  # no resource-level permissions: "*" is the only resource it accepts. It
  # reads group membership, nothing else.
  statement {
    sid       = "FindOwnGroup"
    actions   = ["autoscaling:DescribeAutoScalingInstances"]
    resources = ["*"]
  }

  # The agent binary, when it is fetched from S3 by the install script.
  dynamic "statement" {
    for_each = local.agent_object_arn == null ? [] : [local.agent_object_arn]
    content {
      sid       = "FetchAgent"
      actions   = ["s3:GetObject"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = length(var.s3_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "ObjectKeys"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = var.s3_kms_key_arns
    }
  }

  dynamic "statement" {
    for_each = var.sqs_kms_key_id == null ? [] : [1]
    content {
      sid       = "QueueKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [data.aws_kms_key.sqs[0].arn]
    }
  }

  # Per-instance tags (publish_tags): an instance may tag itself only, and
  # only with the templated keys. Launch-time tags need no permission.
  # aws:ARN is the target resource's ARN; compared with the calling
  # instance's ARN it limits the call to "this instance" (a widely used,
  # if thinly documented, pattern; the IAM console flags the key as unknown).
  dynamic "statement" {
    for_each = var.publish_tags && length(local.templated_tag_keys) > 0 ? [1] : []
    content {
      sid       = "TagSelf"
      actions   = ["ec2:CreateTags"]
      resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/*"]
      condition {
        test     = "StringEquals"
        variable = "aws:ARN"
        values   = ["$${ec2:SourceInstanceARN}"]
      }
      condition {
        test     = "ForAllValues:StringEquals"
        variable = "aws:TagKeys"
        values   = local.templated_tag_keys
      }
    }
  }
}

data "aws_kms_key" "sqs" {
  count  = var.sqs_kms_key_id == null ? 0 : 1
  key_id = var.sqs_kms_key_id
}

resource "aws_iam_role_policy" "agent" {
  count = var.create_iam_instance_profile ? 1 : 0

  name   = "rangefleet-agent"
  role   = aws_iam_role.agent[0].id
  policy = data.aws_iam_policy_document.agent.json
}

resource "aws_iam_role_policy_attachment" "ssm" {
  count      = var.create_iam_instance_profile && var.enable_ssm ? 1 : 0
  role       = aws_iam_role.agent[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

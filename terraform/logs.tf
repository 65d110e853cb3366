# The journal's log group (var.journal_log_group, when it has a name): each instance's
# rangefleet-journal-cloudwatch.service writes its agent's journal entries to
# a stream named after the instance id (docs/operations.md).

locals {
  journal_log_group_name = var.journal_log_group.name
  journal_log_group_arn  = var.journal_log_group.name == null ? null : "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.journal_log_group_name}"
}

resource "aws_cloudwatch_log_group" "journal" {
  #checkov:skip=CKV_AWS_158:the KMS key is the caller's choice (journal_log_group.kms_key_arn); CloudWatch Logs encrypts at rest without one
  #checkov:skip=CKV_AWS_338:the retention is the caller's choice (journal_log_group.retention_in_days); an ephemeral fleet's journal is rarely kept a year
  count = var.journal_log_group.name == null ? 0 : 1

  name              = local.journal_log_group_name
  retention_in_days = coalesce(var.journal_log_group.retention_in_days, 30)
  kms_key_id        = var.journal_log_group.kms_key_arn
  tags              = local.launch_tags
}

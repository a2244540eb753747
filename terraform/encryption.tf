# One customer-managed key encrypts the lake, the lock table, the image repository, the
# logs and the alarm topic: ~$1/month, and one place to audit and revoke access.

data "aws_iam_policy_document" "key" {
  # checkov:skip=CKV_AWS_109:Key policies must name the account root with kms:* so IAM policies can grant use of the key; without it the key becomes unmanageable.
  # checkov:skip=CKV_AWS_111:Same statement: a key policy's resource "*" means this key only.
  # checkov:skip=CKV_AWS_356:Same statement: a key policy's resource "*" means this key only.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:/${var.name}/*"]
    }
  }

  statement {
    sid       = "ServicesPublishToTheAlarmTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "events.amazonaws.com", "budgets.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "schemahub" {
  description             = "${var.name}: lake, lock table, images, logs and alarms"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "schemahub" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.schemahub.key_id
}

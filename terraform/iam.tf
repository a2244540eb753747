# Least privilege, one role per job. Every job may read the whole lake prefix (the raw
# layer, state, run records and table are all inputs somewhere) but writes only where it
# must:
#   ingest     raw/ (responses)  state/{checkpoints,gaps,seeds,bans}/  runs/
#   transform  table/ (Delta commits)  state/{transform,quarantine}/  runs/
#   compact    table/ (rewrites, vacuum)  runs/
#   check      runs/ (its run record; the results also go out as metrics)
# tests/deploy/test_deployed_jobs.py runs each job and checks that every object it
# created, replaced or deleted is inside these prefixes.
# s3:DeleteObject: ingest replaces an unconfirmed raw file a killed run left; compact
# vacuums; transform removes its own uncommitted files after a failed commit.

locals {
  lake_objects = "${aws_s3_bucket.lake.arn}/${var.lake_prefix}"
  job_write_prefixes = {
    ingest    = ["raw", "state/checkpoints", "state/gaps", "state/seeds", "state/bans", "runs"]
    transform = ["table", "state/transform", "state/quarantine", "runs"]
    compact   = ["table", "runs"]
    check     = ["runs"]
  }
  # Only ingest holds leases (product ownership, the exclusive --job); the Delta table needs
  # none. Every job checks at start that the lock table exists.
  job_lease_actions = {
    ingest    = ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Scan"]
    transform = ["dynamodb:DescribeTable"]
    compact   = ["dynamodb:DescribeTable"]
    check     = ["dynamodb:DescribeTable"]
  }
}

# Who may assume the roles: ECS tasks, Step Functions, EventBridge Scheduler - from this account only.
data "aws_iam_policy_document" "assume" {
  for_each = toset(["ecs-tasks", "states", "scheduler"])
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["${each.key}.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

# -- the role ECS uses to start a task: pull the image, ship the logs -------------------

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.assume["ecs-tasks"].json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the action has no resource-level permissions
  }
  statement {
    sid       = "PullTheImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [aws_ecr_repository.schemahub.arn]
  }
  statement {
    sid       = "DecryptTheImage"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.schemahub.arn]
  }
  statement {
    sid       = "ShipTheLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for group in aws_cloudwatch_log_group.job : "${group.arn}:*"]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-and-log"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# -- the role each job's code runs with ---------------------------------------------------

resource "aws_iam_role" "job" {
  for_each           = local.jobs
  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume["ecs-tasks"].json
}

data "aws_iam_policy_document" "job" {
  for_each = local.jobs

  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.lake_prefix}/*"]
    }
  }
  statement {
    sid       = "ReadTheLake"
    actions   = ["s3:GetObject"]
    resources = ["${local.lake_objects}/*"]
  }
  statement {
    sid       = "WriteItsPartOfTheLake"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = [for prefix in local.job_write_prefixes[each.key] : "${local.lake_objects}/${prefix}/*"]
  }
  statement {
    sid       = "Leases"
    actions   = local.job_lease_actions[each.key]
    resources = [aws_dynamodb_table.locks.arn]
  }
  statement {
    sid       = "UseTheDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.schemahub.arn]
  }
}

resource "aws_iam_role_policy" "job" {
  for_each = local.jobs
  name     = "${each.key}-lake-access"
  role     = aws_iam_role.job[each.key].id
  policy   = data.aws_iam_policy_document.job[each.key].json
}

# -- Step Functions: run ingest -> transform -> check as ECS tasks -----------------------

resource "aws_iam_role" "pipeline" {
  name               = "${var.name}-pipeline"
  assume_role_policy = data.aws_iam_policy_document.assume["states"].json
}

data "aws_iam_policy_document" "pipeline" {
  statement {
    sid       = "RunTheJobs"
    actions   = ["ecs:RunTask"]
    resources = [for job in ["ingest", "transform", "check"] : "${aws_ecs_task_definition.job[job].arn_without_revision}:*"]
  }
  statement {
    sid       = "WatchAndStopTheJobs"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = ["arn:${data.aws_partition.current.partition}:ecs:${var.region}:${data.aws_caller_identity.current.account_id}:task/${aws_ecs_cluster.schemahub.name}/*"]
  }
  statement {
    sid       = "PassTheJobRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.execution.arn, aws_iam_role.job["ingest"].arn, aws_iam_role.job["transform"].arn, aws_iam_role.job["check"].arn]
  }
  statement {
    sid       = "SyncIntegrationRule"
    actions   = ["events:PutTargets", "events:PutRule", "events:DescribeRule"]
    resources = ["arn:${data.aws_partition.current.partition}:events:${var.region}:${data.aws_caller_identity.current.account_id}:rule/StepFunctionsGetEventsForECSTaskRule"]
  }
  statement {
    sid = "ExecutionLogs"
    # CloudWatch Logs delivery actions have no resource-level permissions.
    actions = ["logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"]
    resources = ["*"]
  }
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    resources = ["*"] # X-Ray has no resource-level permissions
  }
}

resource "aws_iam_role_policy" "pipeline" {
  name   = "run-the-jobs"
  role   = aws_iam_role.pipeline.id
  policy = data.aws_iam_policy_document.pipeline.json
}

# -- EventBridge Scheduler: start the pipeline; run compaction --------------------------

resource "aws_iam_role" "scheduler" {
  name               = "${var.name}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.assume["scheduler"].json
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "StartThePipeline"
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.pipeline.arn]
  }
  statement {
    sid       = "RunCompaction"
    actions   = ["ecs:RunTask"]
    resources = ["${aws_ecs_task_definition.job["compact"].arn_without_revision}:*"]
  }
  statement {
    sid       = "PassTheCompactionRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.execution.arn, aws_iam_role.job["compact"].arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "start-jobs"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

# When things run. Every pipeline_schedule: ingest -> transform -> check, as one Step
# Functions execution (check runs after each transform, on what it wrote). Daily:
# compaction with vacuum, on its own: Delta commits are optimistic, so a compaction that
# overlaps a transform is safe (the loser retries its commit).

locals {
  network_configuration = {
    AwsvpcConfiguration = {
      Subnets        = var.subnet_ids
      SecurityGroups = [aws_security_group.tasks.id]
      AssignPublicIp = var.assign_public_ip ? "ENABLED" : "DISABLED"
    }
  }
  capacity_provider = var.fargate_spot ? "FARGATE_SPOT" : "FARGATE"

  # An ECS task of the pipeline, waited for (.sync); a Spot interruption or a failed
  # start is retried (every stage resumes from its checkpoint or commit).
  pipeline_task = { for job in ["ingest", "transform", "check"] : job => {
    Type     = "Task"
    Resource = "arn:${data.aws_partition.current.partition}:states:::ecs:runTask.sync"
    Parameters = {
      Cluster                  = aws_ecs_cluster.schemahub.arn
      TaskDefinition           = aws_ecs_task_definition.job[job].arn_without_revision
      CapacityProviderStrategy = [{ CapacityProvider = local.capacity_provider, Weight = 1 }]
      NetworkConfiguration     = local.network_configuration
      PropagateTags            = "TASK_DEFINITION"
    }
    Retry = [{
      ErrorEquals     = ["ECS.AmazonECSException", "States.Timeout"]
      IntervalSeconds = 60
      MaxAttempts     = 2
      BackoffRate     = 2
    }]
    TimeoutSeconds = 6 * 3600
    ResultSelector = { "exit_code.$" = "$.Containers[0].ExitCode" }
  } }
  exit_code_choice = { for job, next in { transform = "Check", check = "Done" } : job => {
    Type = "Choice"
    Choices = [
      { Variable = "$.${job}.exit_code", NumericEquals = 0, Next = next },
      { Variable = "$.${job}.exit_code", NumericEquals = 4, Next = next },
    ]
    Default = job == "transform" ? "TransformFailed" : "CheckFailed"
  } }
}

resource "aws_cloudwatch_log_group" "pipeline" {
  name              = "/${var.name}/pipeline"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.schemahub.arn
}

resource "aws_sfn_state_machine" "pipeline" {
  name     = "${var.name}-pipeline"
  role_arn = aws_iam_role.pipeline.arn

  # runTask.sync succeeds whenever the task stops, whatever its exit status: the Choice
  # states read the container's exit code (0 ok, 4 done but needs attention, else failed).
  definition = jsonencode({
    Comment = "SchemaHub: ingest new trades, transform them into the unified table, check the result"
    StartAt = "Ingest"
    States = {
      # A partly failed ingest (one exchange down) still wrote good data: transform it.
      Ingest = merge(local.pipeline_task["ingest"], {
        ResultPath = "$.ingest", Next = "Transform"
        Catch      = [{ ErrorEquals = ["States.ALL"], ResultPath = "$.ingest_error", Next = "Transform" }]
      })
      Transform       = merge(local.pipeline_task["transform"], { ResultPath = "$.transform", Next = "TransformResult" })
      TransformResult = local.exit_code_choice["transform"]
      Check           = merge(local.pipeline_task["check"], { ResultPath = "$.check", Next = "CheckResult" })
      CheckResult     = local.exit_code_choice["check"]
      TransformFailed = { Type = "Fail", Error = "TransformFailed", Cause = "transform exited non-zero: see /${var.name}/transform" }
      CheckFailed     = { Type = "Fail", Error = "ChecksFailed", Cause = "a data-quality check failed: see /${var.name}/check" }
      Done            = { Type = "Succeed" }
    }
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.pipeline.arn}:*"
    include_execution_data = true # inputs are task descriptions only: no data, no secrets
    level                  = "ALL"
  }

  tracing_configuration {
    enabled = true
  }
}

resource "aws_scheduler_schedule" "pipeline" {
  name                         = "${var.name}-pipeline"
  description                  = "ingest -> transform -> check"
  schedule_expression          = var.pipeline_schedule
  schedule_expression_timezone = "UTC"
  kms_key_arn                  = aws_kms_key.schemahub.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_sfn_state_machine.pipeline.arn
    role_arn = aws_iam_role.scheduler.arn
  }
}

resource "aws_scheduler_schedule" "compact" {
  name                         = "${var.name}-compact"
  description                  = "compact --vacuum"
  schedule_expression          = var.compact_schedule
  schedule_expression_timezone = "UTC"
  kms_key_arn                  = aws_kms_key.schemahub.arn

  flexible_time_window {
    mode                      = "FLEXIBLE"
    maximum_window_in_minutes = 30
  }

  target {
    arn      = aws_ecs_cluster.schemahub.arn
    role_arn = aws_iam_role.scheduler.arn

    ecs_parameters {
      task_definition_arn = aws_ecs_task_definition.job["compact"].arn_without_revision
      propagate_tags      = "TASK_DEFINITION"

      capacity_provider_strategy {
        capacity_provider = local.capacity_provider
        weight            = 1
      }

      network_configuration {
        subnets          = var.subnet_ids
        security_groups  = [aws_security_group.tasks.id]
        assign_public_ip = var.assign_public_ip
      }
    }

    retry_policy {
      maximum_retry_attempts = 2
    }
  }
}

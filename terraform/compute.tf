# ECS Fargate: one cluster, one task definition per job (the commands are in jobs.tf).

resource "aws_ecs_cluster" "schemahub" {
  # checkov:skip=CKV_AWS_65:Container Insights bills per task metric; the jobs publish their own metrics (EMF) and the dashboard is built from those.
  name = var.name
}

resource "aws_ecs_cluster_capacity_providers" "schemahub" {
  cluster_name       = aws_ecs_cluster.schemahub.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]
}

resource "aws_security_group" "tasks" {
  # checkov:skip=CKV2_AWS_5:Attached at run time: Step Functions and EventBridge Scheduler pass it in the tasks' network configuration (schedules.tf).
  name        = "${var.name}-tasks"
  description = "SchemaHub tasks: no inbound traffic; HTTPS out to the exchanges and AWS APIs"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to exchange APIs (public internet) and AWS endpoints"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"] #tfsec:ignore:aws-ec2-no-public-egress-sgr
  }
}

resource "aws_cloudwatch_log_group" "job" {
  for_each          = local.jobs
  name              = "/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.schemahub.arn
}

resource "aws_ecs_task_definition" "job" {
  for_each                 = local.jobs
  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_sizes[each.key].cpu
  memory                   = var.task_sizes[each.key].memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.job[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # The root filesystem is read-only; DuckDB's extension cache and temp files go here.
  volume {
    name = "scratch"
  }

  container_definitions = jsonencode([{
    name                   = "schemahub"
    image                  = "${aws_ecr_repository.schemahub.repository_url}:${var.image_tag}"
    essential              = true
    command                = each.value
    environment            = local.job_environment
    readonlyRootFilesystem = true
    mountPoints            = [{ sourceVolume = "scratch", containerPath = "/tmp", readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.job[each.key].name
        awslogs-region        = var.region
        awslogs-stream-prefix = each.key
      }
    }
  }])
}

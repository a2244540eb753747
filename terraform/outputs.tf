output "lake_url" {
  description = "SCHEMAHUB_LAKE for running the CLI against the deployed lake from a laptop."
  value       = local.lake_url
}

output "locks_url" {
  description = "SCHEMAHUB_LOCKS for the same."
  value       = "dynamodb://${aws_dynamodb_table.locks.name}"
}

output "ecr_repository_url" {
  description = "Push the image here, tagged with var.image_tag."
  value       = aws_ecr_repository.schemahub.repository_url
}

output "cluster_name" {
  description = "The ECS cluster the jobs run in."
  value       = aws_ecs_cluster.schemahub.name
}

output "task_definitions" {
  description = "Task definition family per job (for a manual `aws ecs run-task`)."
  value       = { for job, definition in aws_ecs_task_definition.job : job => definition.family }
}

output "state_machine_arn" {
  description = "The ingest -> transform -> check pipeline; start an execution to run it now."
  value       = aws_sfn_state_machine.pipeline.arn
}

output "athena_workgroup" {
  description = "Query the `trades` and `raw_trades` tables in this workgroup."
  value       = aws_athena_workgroup.schemahub.name
}

output "glue_database" {
  description = "The Glue database holding the tables."
  value       = aws_glue_catalog_database.lake.name
}

output "alarm_topic_arn" {
  description = "SNS topic of alarms and budget alerts; subscribe more endpoints here."
  value       = aws_sns_topic.alarms.arn
}

output "dashboard_url" {
  description = "The CloudWatch dashboard."
  value       = "https://${var.region}.console.aws.amazon.com/cloudwatch/home?region=${var.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.schemahub.dashboard_name}"
}

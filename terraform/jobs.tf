# What each scheduled task runs: the container command and environment of the four ECS
# task definitions (compute.tf). Kept here as plain data so the test suite can render
# them from this file and run the very same commands against the simulator and a local
# S3/DynamoDB endpoint (tests/deploy/test_deployed_jobs.py).

locals {
  lake_url          = "s3://${aws_s3_bucket.lake.bucket}/${var.lake_prefix}"
  metrics_namespace = "SchemaHub"

  # The settings a laptop run reads from its environment, pointed at the AWS resources.
  job_environment = [
    { name = "SCHEMAHUB_LAKE", value = local.lake_url },
    { name = "SCHEMAHUB_LOCKS", value = "dynamodb://${aws_dynamodb_table.locks.name}" },
    { name = "SCHEMAHUB_GLUE_DATABASE", value = aws_glue_catalog_database.lake.name },
    { name = "SCHEMAHUB_METRICS", value = "cloudwatch" },
    { name = "SCHEMAHUB_METRICS_NAMESPACE", value = local.metrics_namespace },
    { name = "AWS_REGION", value = var.region },
  ]

  # One container command per job (the image's entrypoint is `schemahub`).
  jobs = {
    # --job: if an ingest outlives its interval, the next scheduled one exits at once.
    ingest = concat(
      ["ingest", "--exchange", join(",", var.exchanges), "--since", var.ingest_since, "--job", "scheduled-ingest"],
      length(var.products) == 0 ? [] : ["--products", join(",", var.products)],
    )
    transform = ["transform"]
    # check exits 1 when a check fails; its results are metrics (ChecksFailed, CheckFailed, UnexplainedGaps).
    check   = ["check", "--freshness", "${var.freshness_hours}h"]
    compact = ["compact", "--vacuum", "--retain-hours", tostring(var.vacuum_retain_hours)]
  }
}

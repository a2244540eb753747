# Alarms, the alarm topic and the CloudWatch dashboard. Every metric here comes from the
# jobs' own Embedded Metric Format lines (namespace local.metrics_namespace; the names are
# listed in src/schemahub/metrics/emf.py, and a test checks each one is really emitted).

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.schemahub.arn
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "AlarmSources"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "events.amazonaws.com", "budgets.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  alarm_actions = [aws_sns_topic.alarms.arn]
}

# -- alarms ---------------------------------------------------------------------------------

# Alarms on events: any occurrence within an hour alarms.
locals {
  event_alarms = merge(
    { for job in keys(local.jobs) : "${job}-failed" => {
      description = "A schemahub ${job} run failed: see the log group /${var.name}/${job} and the runs table."
      namespace   = local.metrics_namespace, metric = "RunFailed", dimensions = { Command = job }
    } },
    {
      exchange-banned = {
        description = "An exchange banned this IP (HTTP 418): ingest stopped asking it until the ban ends; the run record says which."
        namespace   = local.metrics_namespace, metric = "BannedMax", dimensions = { Command = "ingest" }
      }
      unexplained-gaps = {
        description = "check found trade ids missing from the table that the exchange did not skip: run `schemahub check`."
        namespace   = local.metrics_namespace, metric = "UnexplainedGaps", dimensions = { Command = "check" }
      }
      pipeline-failed = {
        description = "The ingest -> transform -> check execution failed (a task could not start, crashed, or check failed)."
        namespace   = "AWS/States", metric = "ExecutionsFailed", dimensions = { StateMachineArn = aws_sfn_state_machine.pipeline.arn }
      }
    },
  )
}

resource "aws_cloudwatch_metric_alarm" "event" {
  for_each            = local.event_alarms
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "stale_data" {
  alarm_name        = "${var.name}-stale-data"
  alarm_description = "The newest trade of some product is more than ${var.freshness_hours}h old, or no ingest reported for ${var.freshness_hours}h."
  namespace         = local.metrics_namespace
  metric_name       = "FreshnessLagMax"
  dimensions        = { Command = "ingest" }
  statistic         = "Maximum"
  period            = 3600
  # Hours without an ingest count as breaching: silence is staleness too.
  evaluation_periods  = var.freshness_hours
  datapoints_to_alarm = var.freshness_hours
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.freshness_hours * 3600
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# A task that dies before it can report (bad image, out of memory) sends no metric:
# ECS's own stop event catches it.
resource "aws_cloudwatch_event_rule" "task_crashed" {
  name        = "${var.name}-task-crashed"
  description = "A schemahub task stopped with a non-zero exit code"
  event_pattern = jsonencode({
    source      = ["aws.ecs"]
    detail-type = ["ECS Task State Change"]
    detail = {
      clusterArn = [aws_ecs_cluster.schemahub.arn]
      lastStatus = ["STOPPED"]
      containers = { exitCode = [{ "anything-but" = 0 }] }
    }
  })
}

resource "aws_cloudwatch_event_target" "task_crashed" {
  rule = aws_cloudwatch_event_rule.task_crashed.name
  arn  = aws_sns_topic.alarms.arn
}

# -- the dashboard --------------------------------------------------------------------------

locals {
  ns = local.metrics_namespace
  # SEARCH keeps the widgets complete as exchanges and products come and go.
  search = {
    for name, q in {
      latency_p50 = ["{${local.ns},Exchange} MetricName=\"LatencyP50\"", "Average"]
      latency_p95 = ["{${local.ns},Exchange} MetricName=\"LatencyP95\"", "Average"]
      http_429    = ["{${local.ns},Exchange} MetricName=\"Http429\"", "Sum"]
      http_5xx    = ["{${local.ns},Exchange} MetricName=\"Http5xx\"", "Sum"]
      trips       = ["{${local.ns},Exchange} MetricName=\"BreakerTrips\"", "Sum"]
      limiter     = ["{${local.ns},Exchange} MetricName=\"RateLimiterWait\"", "Sum"]
      lag         = ["{${local.ns},Exchange,Symbol} MetricName=\"FreshnessLag\"", "Maximum"]
      gaps        = ["{${local.ns},Exchange,Symbol} MetricName=\"UnexplainedGaps\"", "Maximum"]
      ingested    = ["{${local.ns},Exchange,Symbol} MetricName=\"TradesIngested\"", "Sum"]
      checks      = ["{${local.ns},Check} MetricName=\"CheckFailed\"", "Maximum"]
    } : name => [{ expression = "SEARCH('${q[0]}', '${q[1]}', 3600)", id = name }] # one row of "metrics"
  }
  widget = { region = var.region, period = 3600, stacked = false, view = "timeSeries" }
}

resource "aws_cloudwatch_dashboard" "schemahub" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      { type = "text", x = 0, y = 0, width = 24, height = 1, properties = { markdown = "## Headline" } },
      { type = "metric", x = 0, y = 1, width = 24, height = 4, properties = merge(local.widget, {
        title = "Last 24 hours", view = "singleValue", period = 86400, stat = "Sum"
        metrics = [
          [local.ns, "Trades", "Command", "transform", { label = "Trades added to the table" }],
          [local.ns, "Trades", "Command", "ingest", { label = "Trades ingested" }],
          [local.ns, "RunFailed", "Command", "ingest", { label = "Failed ingests" }],
          [local.ns, "ChecksFailed", "Command", "check", { label = "Failed checks", stat = "Maximum" }],
          [local.ns, "FreshnessLagMax", "Command", "ingest", { label = "Stalest product (s)", stat = "Maximum" }],
        ]
      }) },

      { type = "text", x = 0, y = 5, width = 24, height = 1, properties = { markdown = "## Pipeline operations" } },
      { type = "metric", x = 0, y = 6, width = 8, height = 6, properties = merge(local.widget, {
        title   = "Trades per run", stat = "Sum"
        metrics = [[local.ns, "Trades", "Command", "ingest"], [local.ns, "Trades", "Command", "transform"]]
      }) },
      { type = "metric", x = 8, y = 6, width = 8, height = 6, properties = merge(local.widget, {
        title   = "Run duration (s)", stat = "Maximum"
        metrics = [for job in keys(local.jobs) : [local.ns, "RunDuration", "Command", job]]
      }) },
      { type = "metric", x = 16, y = 6, width = 8, height = 6, properties = merge(local.widget, {
        title   = "Failed runs", stat = "Sum"
        metrics = [for job in keys(local.jobs) : [local.ns, "RunFailed", "Command", job]]
      }) },

      { type = "text", x = 0, y = 12, width = 24, height = 1, properties = { markdown = "## API health" } },
      { type = "metric", x = 0, y = 13, width = 8, height = 6, properties = merge(local.widget, {
        title = "Request latency p50 / p95 (ms)", metrics = [local.search.latency_p50, local.search.latency_p95]
      }) },
      { type = "metric", x = 8, y = 13, width = 8, height = 6, properties = merge(local.widget, {
        title = "HTTP 429 and 5xx answers", metrics = [local.search.http_429, local.search.http_5xx]
      }) },
      { type = "metric", x = 16, y = 13, width = 8, height = 6, properties = merge(local.widget, {
        title = "Breaker trips and rate-limiter wait (s)", metrics = [local.search.trips, local.search.limiter]
      }) },

      { type = "text", x = 0, y = 19, width = 24, height = 1, properties = { markdown = "## Data completeness" } },
      { type = "metric", x = 0, y = 20, width = 8, height = 6, properties = merge(local.widget, {
        title       = "Freshness lag per product (s)", metrics = [local.search.lag]
        annotations = { horizontal = [{ label = "alarm", value = var.freshness_hours * 3600 }] }
      }) },
      { type = "metric", x = 8, y = 20, width = 8, height = 6, properties = merge(local.widget, {
        title = "Unexplained gaps per product", metrics = [local.search.gaps]
      }) },
      { type = "metric", x = 16, y = 20, width = 8, height = 6, properties = merge(local.widget, {
        title = "Failed data-quality checks", metrics = [local.search.checks]
      }) },
      { type = "metric", x = 0, y = 26, width = 24, height = 6, properties = merge(local.widget, {
        title = "Trades ingested per product", metrics = [local.search.ingested]
      }) },

      { type = "text", x = 0, y = 32, width = 24, height = 1, properties = { markdown = "## Storage" } },
      { type = "metric", x = 0, y = 33, width = 24, height = 6, properties = merge(local.widget, {
        title = "Lake bucket size (bytes; S3 reports once a day)", period = 86400, stat = "Average"
        metrics = [
          ["AWS/S3", "BucketSizeBytes", "BucketName", aws_s3_bucket.lake.bucket, "StorageType", "StandardStorage"],
          ["AWS/S3", "BucketSizeBytes", "BucketName", aws_s3_bucket.lake.bucket, "StorageType", "StandardIAStorage"],
        ]
      }) },
    ]
  })
}

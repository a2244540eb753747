# Every input of the deployment. Only `lake_bucket`, `vpc_id` and `subnet_ids` have no
# default; terraform.tfvars.example shows a complete file.

variable "region" {
  description = "AWS region for every resource (the lake bucket, the tasks and Athena must share one)."
  type        = string
  default     = "us-east-1"
  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like us-east-1 or eu-central-1."
  }
}

variable "name" {
  description = "Prefix of every resource name (cluster, tasks, roles, alarms, log groups)."
  type        = string
  default     = "schemahub"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,23}$", var.name))
    error_message = "name: 2-24 characters, lower-case letters, digits and '-', starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "lake_bucket" {
  description = "Name of the S3 bucket Terraform creates for the lake (globally unique)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.lake_bucket)) && !strcontains(var.lake_bucket, "..")
    error_message = "lake_bucket must be a valid S3 bucket name: 3-63 lower-case letters, digits, '.' and '-'."
  }
}

variable "lake_prefix" {
  description = "Key prefix of the lake inside the bucket: raw files, checkpoints, run records and the Delta table live under it."
  type        = string
  default     = "lake"
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", var.lake_prefix))
    error_message = "lake_prefix: one path segment of lower-case letters, digits, '_' and '-'."
  }
}

variable "glue_database" {
  description = "Glue database the unified `trades` table and the `raw_trades` table are registered in."
  type        = string
  default     = "schemahub"
  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,254}$", var.glue_database))
    error_message = "glue_database: lower-case letters, digits and '_', starting with a letter."
  }
}

variable "exchanges" {
  description = "Exchanges the scheduled ingest collects: [\"all\"] (every venue the image knows) or names (`schemahub version` lists them)."
  type        = list(string)
  default     = ["all"]
  validation {
    condition     = length(var.exchanges) > 0 && alltrue([for e in var.exchanges : can(regex("^[a-z][a-z0-9]{1,31}$", e))])
    error_message = "exchanges: a non-empty list of exchange names (lower-case letters and digits), or [\"all\"]."
  }
}

variable "products" {
  description = "Products to ingest as normalized symbols (BTC-USD, ETH-USDT). Empty: the seed list shipped with the image."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for p in var.products : can(regex("^[A-Z0-9]{1,16}-[A-Z0-9]{1,16}$", p))])
    error_message = "products: normalized BASE-QUOTE symbols in upper case, e.g. BTC-USD."
  }
}

variable "ingest_since" {
  description = "Cold start for products without a checkpoint: how far back the first run reaches (e.g. 24h, 7d)."
  type        = string
  default     = "24h"
  validation {
    condition     = can(regex("^[0-9]+[smhd]$", var.ingest_since))
    error_message = "ingest_since: a duration such as 6h or 7d."
  }
}

variable "pipeline_schedule" {
  description = "When ingest -> transform -> check runs (EventBridge Scheduler expression)."
  type        = string
  default     = "rate(6 hours)"
  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.pipeline_schedule))
    error_message = "pipeline_schedule: rate(...) or cron(...)."
  }
}

variable "compact_schedule" {
  description = "When compaction (with vacuum) runs (EventBridge Scheduler expression, UTC)."
  type        = string
  default     = "cron(30 3 * * ? *)"
  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.compact_schedule))
    error_message = "compact_schedule: rate(...) or cron(...)."
  }
}

variable "freshness_hours" {
  description = "Alarm (and fail `check`) when the newest trade of any product is older than this; keep it above the pipeline interval."
  type        = number
  default     = 8
  validation {
    condition     = var.freshness_hours >= 1 && var.freshness_hours <= 24 && floor(var.freshness_hours) == var.freshness_hours
    error_message = "freshness_hours: a whole number from 1 to 24 (CloudWatch evaluates one period per hour, up to a day)."
  }
}

variable "vacuum_retain_hours" {
  description = "compact --vacuum keeps table files any version of this many recent hours still reads."
  type        = number
  default     = 168
  validation {
    condition     = var.vacuum_retain_hours >= 1
    error_message = "vacuum_retain_hours: at least 1."
  }
}

variable "image_tag" {
  description = "Tag of the schemahub image in the ECR repository (tags are immutable: push a new tag per release)."
  type        = string
  default     = "0.1.0"
  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag: a valid OCI tag."
  }
}

variable "vpc_id" {
  description = "VPC the tasks run in."
  type        = string
  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123abcd."
  }
}

variable "subnet_ids" {
  description = "Subnets for the tasks; they need a route to the internet (public subnets with assign_public_ip, or private ones behind NAT)."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids: a non-empty list of subnet-... ids."
  }
}

variable "assign_public_ip" {
  description = "Give tasks a public IP (public subnets without a NAT gateway: the cheapest way out to the exchanges)."
  type        = bool
  default     = true
}

variable "fargate_spot" {
  description = "Run the tasks on Fargate Spot (about 70% cheaper; an interrupted run is safe to repeat: every stage is idempotent)."
  type        = bool
  default     = true
}

variable "task_sizes" {
  description = "Fargate CPU units and memory (MiB) per job."
  type        = map(object({ cpu = number, memory = number }))
  default = {
    ingest    = { cpu = 512, memory = 1024 }
    transform = { cpu = 1024, memory = 4096 }
    compact   = { cpu = 1024, memory = 4096 }
    check     = { cpu = 512, memory = 2048 }
  }
  validation {
    condition     = alltrue([for job in ["ingest", "transform", "compact", "check"] : contains(keys(var.task_sizes), job)])
    error_message = "task_sizes needs an entry for each of ingest, transform, compact, check."
  }
  validation {
    condition     = alltrue([for s in values(var.task_sizes) : contains([256, 512, 1024, 2048, 4096, 8192, 16384], s.cpu) && s.memory >= 512])
    error_message = "task_sizes: cpu must be a Fargate size (256 ... 16384) and memory at least 512 MiB."
  }
}

variable "log_retention_days" {
  description = "How long CloudWatch keeps the task logs (and with them the EMF metric lines)."
  type        = number
  default     = 365
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch's retention periods (1, 3, 5, 7, 14, 30, ... 3653)."
  }
}

variable "raw_infrequent_access_days" {
  description = "Move raw files to S3 Standard-IA after this many days (the transform reads them once; rebuilds are rare)."
  type        = number
  default     = 30
  validation {
    condition     = var.raw_infrequent_access_days >= 30
    error_message = "raw_infrequent_access_days: S3 allows the Standard-IA transition after 30 days at the earliest."
  }
}

variable "noncurrent_version_days" {
  description = "Delete overwritten and deleted object versions (vacuumed table files, replaced checkpoints) after this many days."
  type        = number
  default     = 30
  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days: at least 1."
  }
}

variable "athena_bytes_scanned_limit" {
  description = "Athena cancels any query of the workgroup that scans more bytes than this (the default is 10 GB, about $0.05)."
  type        = number
  default     = 10737418240
  validation {
    condition     = var.athena_bytes_scanned_limit >= 10485760
    error_message = "athena_bytes_scanned_limit: at least 10 MB (Athena's minimum)."
  }
}

variable "alarm_email" {
  description = "Email subscribed to the alarm topic (empty: subscribe yourself later). AWS sends a confirmation mail first."
  type        = string
  default     = ""
  validation {
    condition     = var.alarm_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email: an email address, or empty."
  }
}

variable "budget_limit_usd" {
  description = "Monthly cost budget of the account, in USD."
  type        = number
  default     = 75
  validation {
    condition     = var.budget_limit_usd > 0
    error_message = "budget_limit_usd must be positive."
  }
}

variable "budget_alert_thresholds_usd" {
  description = "Alert (to the alarm topic and alarm_email) when the month's actual cost passes each of these amounts."
  type        = list(number)
  default     = [25, 50, 75]
  validation {
    condition     = length(var.budget_alert_thresholds_usd) > 0 && alltrue([for t in var.budget_alert_thresholds_usd : t > 0])
    error_message = "budget_alert_thresholds_usd: a non-empty list of positive amounts."
  }
}

variable "allow_destroy_with_data" {
  description = "Let `terraform destroy` delete the lake bucket and the image repository even when they hold data. Keep false except to tear down."
  type        = bool
  default     = false
}

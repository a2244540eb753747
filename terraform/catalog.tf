# Athena/Glue: the unified Delta table and the raw layer, registered exactly as
# `schemahub init-cloud` registers them (src/schemahub/cloud.py; a test compares the two).

resource "aws_glue_catalog_database" "lake" {
  # checkov:skip=CKV_AWS_195:Glue Data Catalog encryption is an account-wide setting (aws_glue_data_catalog_encryption_settings); changing it affects every other catalog user of the account, so it is left to the account owner.
  name        = var.glue_database
  description = "SchemaHub trade data"
}

resource "aws_glue_catalog_table" "trades" {
  name          = "trades"
  database_name = aws_glue_catalog_database.lake.name
  description   = "SchemaHub unified trades (Delta Lake); one row per trade, primary key (exchange, symbol, trade_id)"
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    table_type                   = "DELTA"
    EXTERNAL                     = "TRUE"
    "spark.sql.sources.provider" = "delta"
    classification               = "delta"
  }

  storage_descriptor {
    location = "${local.lake_url}/table/trades"

    columns {
      name = "exchange"
      type = "string"
    }
    columns {
      name = "symbol"
      type = "string"
    }
    columns {
      name = "trade_id"
      type = "string"
    }
    columns {
      name = "id_kind"
      type = "string"
    }
    columns {
      name = "side"
      type = "string"
    }
    columns {
      name = "price"
      type = "double"
    }
    columns {
      name = "quantity"
      type = "double"
    }
    columns {
      name = "trade_ts"
      type = "timestamp"
    }
    columns {
      name = "ingest_ts"
      type = "timestamp"
    }
    columns {
      name = "trade_date"
      type = "date"
    }
  }
}

resource "aws_glue_catalog_table" "raw_trades" {
  name          = "raw_trades"
  database_name = aws_glue_catalog_database.lake.name
  description   = "SchemaHub raw layer: every line of every raw file, verbatim (gzip JSONL)"
  table_type    = "EXTERNAL_TABLE"

  # Partition projection: no crawler and no MSCK REPAIR; queries name the exchange and the symbol
  # (both injected, so a new venue needs no change here).
  parameters = {
    EXTERNAL                        = "TRUE"
    classification                  = "json"
    compressionType                 = "gzip"
    "projection.enabled"            = "true"
    "projection.exchange.type"      = "injected"
    "projection.symbol.type"        = "injected"
    "projection.date.type"          = "date"
    "projection.date.format"        = "yyyy-MM-dd"
    "projection.date.range"         = "2010-01-01,NOW"
    "projection.date.interval"      = "1"
    "projection.date.interval.unit" = "DAYS"
    "storage.location.template"     = "${local.lake_url}/raw/exchange=$${exchange}/symbol=$${symbol}/date=$${date}/"
  }

  partition_keys {
    name = "exchange"
    type = "string"
  }
  partition_keys {
    name = "symbol"
    type = "string"
  }
  partition_keys {
    name = "date"
    type = "string"
  }

  storage_descriptor {
    location      = "${local.lake_url}/raw/"
    input_format  = "org.apache.hadoop.mapred.TextInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"

    columns {
      name = "line"
      type = "string"
    }

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"
      # \u0001 never occurs in JSON text, so each line is one column.
      parameters = {
        "field.delim" = "\u0001"
      }
    }
  }
}

resource "aws_athena_workgroup" "schemahub" {
  name          = var.name
  force_destroy = true

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_limit

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location = "s3://${aws_s3_bucket.lake.bucket}/athena-results/"
      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.schemahub.arn
      }
    }
  }
}

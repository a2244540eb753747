"""``schemahub init-cloud`` and ``athena-ddl``: the lock table and the Athena/Glue catalog.

Everything here is idempotent: run it again and it reports what already exists and
brings the table registrations up to date. Terraform creates the same resources in
production (the definitions are the same; see terraform/ once deployed).

Two tables are registered in Glue so that Athena (and Trino/Spark through Glue) query the
lake with no extra step:

* ``trades``     - the unified Delta table (``table_type = DELTA``: Athena reads the schema
  and the file list from the Delta log, so it always sees the last committed version);
* ``raw_trades`` - the raw layer, one row per line of every raw file (``line``: the
  exchange's verbatim JSON, or the file's header line), partitioned by exchange, symbol
  and date with *partition projection*: no crawler, no ``MSCK REPAIR``; queries must
  name the exchange and the symbol (both ``injected``: a new venue needs no catalog change).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from schemahub.errors import ConfigError
from schemahub.infra.aws import Aws, error_code, translate
from schemahub.infra.dynamo_locks import KEY, parse_locks_url
from schemahub.infra.s3 import parse_s3_url
from schemahub.settings import Settings
from schemahub.transform.schema import SCHEMA

if TYPE_CHECKING:
    import pyarrow as pa

_TTL_ATTRIBUTE = "expires_ttl"
_HIVE_TYPES = {"string": "string", "double": "double", "timestamp[us, tz=UTC]": "timestamp",
               "date32[day]": "date"}
_RAW_PROJECTION_START = "2010-01-01"


@dataclass(frozen=True)
class CloudTargets:
    """What init-cloud works on, from the settings."""

    lake: str | None
    """The s3:// lake URL (None for a local lake: nothing to register)."""
    lock_table: str | None
    database: str

    @classmethod
    def from_settings(cls, settings: Settings) -> CloudTargets:
        lake, locks = settings.lake, settings.locks.url
        if lake.startswith("s3://"):
            parse_s3_url(lake)
        return cls(lake.rstrip("/") if lake.startswith("s3://") else None,
                   parse_locks_url(locks) if locks else None, settings.glue_database)

    @property
    def table_location(self) -> str:
        assert self.lake is not None
        return f"{self.lake}/table/trades"

    @property
    def raw_location(self) -> str:
        assert self.lake is not None
        return f"{self.lake}/raw/"


# -- the lock table -------------------------------------------------------------------------


def lock_table_definition(name: str) -> dict[str, Any]:
    """``create_table`` arguments for the lease table (on-demand: a few writes a minute)."""
    return {"TableName": name, "KeySchema": [{"AttributeName": KEY, "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": KEY, "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST"}


def ensure_lock_table(aws: Aws, name: str) -> str:
    db = aws.dynamodb()
    where = f"DynamoDB table {name}"
    try:
        db.create_table(**lock_table_definition(name))
        status = "created"
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) != "ResourceInUseException":
            raise translate(exc, what=where, setting="SCHEMAHUB_LOCKS") from None
        status = "exists"
    except botocore.exceptions.BotoCoreError as exc:
        raise translate(exc, what=where, setting="SCHEMAHUB_LOCKS") from None
    try:
        db.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        ttl = db.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            db.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True,
                                                                            "AttributeName": _TTL_ATTRIBUTE})
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise translate(exc, what=where, setting="SCHEMAHUB_LOCKS") from None
    return status


# -- Glue / Athena --------------------------------------------------------------------------


def _columns(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"Name": f.name, "Type": _HIVE_TYPES[str(f.type)]} for f in schema]


def trades_table_input(targets: CloudTargets) -> dict[str, Any]:
    return {
        "Name": "trades",
        "Description": "SchemaHub unified trades (Delta Lake); one row per trade, primary key "
                       "(exchange, symbol, trade_id)",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"table_type": "DELTA", "EXTERNAL": "TRUE", "spark.sql.sources.provider": "delta",
                       "classification": "delta"},
        "StorageDescriptor": {"Columns": _columns(SCHEMA), "Location": targets.table_location},
    }


def _raw_projection(targets: CloudTargets) -> dict[str, str]:
    return {
        "projection.enabled": "true",
        "projection.exchange.type": "injected",
        "projection.symbol.type": "injected",
        "projection.date.type": "date",
        "projection.date.format": "yyyy-MM-dd",
        "projection.date.range": f"{_RAW_PROJECTION_START},NOW",
        "projection.date.interval": "1",
        "projection.date.interval.unit": "DAYS",
        "storage.location.template":
            targets.raw_location + "exchange=${exchange}/symbol=${symbol}/date=${date}/",
    }


def raw_table_input(targets: CloudTargets) -> dict[str, Any]:
    return {
        "Name": "raw_trades",
        "Description": "SchemaHub raw layer: every line of every raw file, verbatim (gzip JSONL)",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"EXTERNAL": "TRUE", "classification": "json", "compressionType": "gzip",
                       **_raw_projection(targets)},
        "PartitionKeys": [{"Name": "exchange", "Type": "string"}, {"Name": "symbol", "Type": "string"},
                          {"Name": "date", "Type": "string"}],
        "StorageDescriptor": {
            "Columns": [{"Name": "line", "Type": "string"}],
            "Location": targets.raw_location,
            "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
                          "Parameters": {"field.delim": "\u0001"}},  # never in JSON text: one column
        },
    }


def ensure_glue(aws: Aws, targets: CloudTargets) -> list[str]:
    """Create the database and (re)register both tables; one line per action."""
    glue = aws.glue()
    where = f"Glue database {targets.database}"
    done = []
    try:
        try:
            glue.create_database(DatabaseInput={"Name": targets.database,
                                                "Description": "SchemaHub trade data"})
            done.append(f"glue database {targets.database}: created")
        except glue.exceptions.AlreadyExistsException:
            done.append(f"glue database {targets.database}: exists")
        for table in (trades_table_input(targets), raw_table_input(targets)):
            name = f"glue table {targets.database}.{table['Name']}"
            try:
                glue.create_table(DatabaseName=targets.database, TableInput=table)  # type: ignore[arg-type]
                done.append(f"{name}: created")
            except glue.exceptions.AlreadyExistsException:
                glue.update_table(DatabaseName=targets.database, TableInput=table)  # type: ignore[arg-type]
                done.append(f"{name}: updated")
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise translate(exc, what=where, setting="SCHEMAHUB_GLUE_DATABASE") from None
    return done


def athena_ddl(targets: CloudTargets) -> str:
    """The same registration as Athena SQL, for users who manage their catalog themselves."""
    if targets.lake is None:
        raise ConfigError("athena-ddl needs an s3:// lake (SCHEMAHUB_LAKE or --lake): Athena reads S3 only")
    projection = ",\n".join(f"  '{k}' = '{v}'" for k, v in _raw_projection(targets).items())
    db = targets.database
    # Safe to splice: the database matched _DATABASE and the locations parse_s3_url's
    # strict bucket and key patterns, so no quote can reach the text.
    return f"""-- SchemaHub tables for Athena (engine version 3). Run each statement separately.
CREATE DATABASE IF NOT EXISTS {db};

-- The unified trades table: Athena reads its schema and files from the Delta log.
CREATE EXTERNAL TABLE IF NOT EXISTS {db}.trades
LOCATION '{targets.table_location}'
TBLPROPERTIES ('table_type' = 'DELTA');

-- The raw layer: every line of every raw file (the header line included), verbatim.
-- Partition projection: no crawler; name the symbol in queries, e.g.
--   SELECT json_extract_scalar(line, '$.trade_id') FROM {db}.raw_trades
--   WHERE exchange = 'coinbase' AND symbol = 'BTC-USD' AND "date" = '2026-11-26'
--     AND line NOT LIKE '{{"_schemahub"%';
CREATE EXTERNAL TABLE IF NOT EXISTS {db}.raw_trades (line string)
PARTITIONED BY (exchange string, symbol string, `date` string)
ROW FORMAT DELIMITED FIELDS TERMINATED BY '\\u0001'
STORED AS TEXTFILE
LOCATION '{targets.raw_location}'
TBLPROPERTIES (
{projection}
);
"""  # noqa: S608

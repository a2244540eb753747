"""Cloud setup commands: init-cloud (lock table, Glue/Athena registration) and athena-ddl."""

from __future__ import annotations

from schemahub import cloud
from schemahub.cli.app import LakeOption, app, errors, out
from schemahub.config import Settings
from schemahub.errors import ConfigError
from schemahub.infra.aws import Aws


@app.command("init-cloud")
@errors
def init_cloud(lake: LakeOption = None) -> None:
    """Create the DynamoDB lock table and register the tables in Glue for Athena (idempotent).

    Uses SCHEMAHUB_LOCKS=dynamodb://TABLE, the s3:// lake, SCHEMAHUB_GLUE_DATABASE (default
    schemahub) and the standard AWS settings.
    """
    settings = Settings.load(lake)
    targets = cloud.CloudTargets.from_env(settings.lake, settings.env)
    if targets.lock_table is None and targets.lake is None:
        raise ConfigError("nothing to initialize: set SCHEMAHUB_LOCKS=dynamodb://TABLE and/or use an "
                          "s3:// lake (SCHEMAHUB_LAKE)")
    aws = Aws.from_env(settings.env)
    if targets.lock_table is not None:
        out.print(f"lock table {targets.lock_table}: {cloud.ensure_lock_table(aws, targets.lock_table)}")
    if targets.lake is not None:
        for line in cloud.ensure_glue(aws, targets):
            out.print(line)


@app.command("athena-ddl")
@errors
def athena_ddl(lake: LakeOption = None) -> None:
    """Print the Athena DDL that registers the unified table and the raw layer (no AWS call)."""
    settings = Settings.load(lake)
    out.print(cloud.athena_ddl(cloud.CloudTargets.from_env(settings.lake, settings.env)), markup=False,
              highlight=False, soft_wrap=True)

"""Cloud setup commands: init-cloud (lock table, Glue/Athena registration) and athena-ddl."""

from __future__ import annotations

from schemahub.cli.app import LakeOption, app, errors, out, settings_for
from schemahub.errors import ConfigError


@app.command("init-cloud")
@errors
def init_cloud(lake: LakeOption = None) -> None:
    """Create the DynamoDB lock table and register the tables in Glue for Athena (idempotent).

    Uses SCHEMAHUB_LOCKS=dynamodb://TABLE, the s3:// lake, SCHEMAHUB_GLUE_DATABASE (default
    schemahub) and the standard AWS settings.
    """
    from schemahub import cloud  # boto3 and the table schema: only for this command

    settings = settings_for(lake)
    targets = cloud.CloudTargets.from_settings(settings)
    if targets.lock_table is None and targets.lake is None:
        raise ConfigError("nothing to initialize: set SCHEMAHUB_LOCKS=dynamodb://TABLE and/or use an "
                          "s3:// lake (SCHEMAHUB_LAKE)")
    aws = settings.aws
    if targets.lock_table is not None:
        out.print(f"lock table {targets.lock_table}: {cloud.ensure_lock_table(aws, targets.lock_table)}")
    if targets.lake is not None:
        for line in cloud.ensure_glue(aws, targets):
            out.print(line)


@app.command("athena-ddl")
@errors
def athena_ddl(lake: LakeOption = None) -> None:
    """Print the Athena DDL that registers the unified table and the raw layer (no AWS call)."""
    from schemahub import cloud

    out.print(cloud.athena_ddl(cloud.CloudTargets.from_settings(settings_for(lake))), markup=False,
              highlight=False, soft_wrap=True)

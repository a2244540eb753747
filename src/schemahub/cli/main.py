"""Entry point of the ``schemahub`` command: registers every command module, runs the app."""

from __future__ import annotations

import sys

import typer

from schemahub.cli import (  # noqa: F401 - they register
    commands_cloud,
    commands_dev,
    commands_export,
    commands_ingest,
    commands_observe,
    commands_run,
    commands_table,
)
from schemahub.cli.app import app, hoist_global_options, plain_metavars


def main() -> None:
    command = plain_metavars(typer.main.get_command(app))
    command(args=hoist_global_options(sys.argv[1:]), prog_name="schemahub")

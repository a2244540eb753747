"""Entry point of the ``schemahub`` command: registers every command module, runs the app."""

from __future__ import annotations

from schemahub.cli import (  # noqa: F401 - they register
    commands_cloud,
    commands_dev,
    commands_ingest,
    commands_observe,
    commands_table,
)
from schemahub.cli.app import app


def main() -> None:
    app()

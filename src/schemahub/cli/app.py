"""The ``schemahub`` Typer app and what every command shares.

Errors are translated to messages and exit codes in one place (``errors``):
0 success, 1 a run or check failed (details printed), 2 bad input or configuration,
3 another run of the same job holds its lock, 4 done but something needs attention
(quarantined raw files), 130 interrupted.
"""

from __future__ import annotations

import functools
import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from schemahub.cli import logs
from schemahub.errors import ConfigError, SchemahubError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="schemahub", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Exactly-once crypto trade data: exchange REST APIs -> immutable raw lake -> one table.",
)
checkpoints_app = typer.Typer(no_args_is_help=True, help="Inspect or repair per-product watermarks.")
app.add_typer(checkpoints_app, name="checkpoints")

err = Console(stderr=True)
# Piped output (CI logs, `| less`) gets wide tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 200)

LakeOption = Annotated[str | None, typer.Option(
    "--lake", envvar="SCHEMAHUB_LAKE", show_envvar=True,
    help="Lake location: a local directory (default ./lake) or s3://bucket/prefix.")]
ExchangeOption = Annotated[str, typer.Option("--exchange", "-e", help="Exchange name, e.g. coinbase.")]
ExchangesOption = Annotated[str, typer.Option(
    "--exchange", "-e", help="Exchange(s): coinbase, binance, kraken; several with commas, or all.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


class _Context:
    interactive = False


context = _Context()


def errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Translate SchemahubError into one clear line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SchemahubError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def _main(
    log_format: Annotated[logs.LogFormat, typer.Option(
        "--log-format", help="auto: rich on a terminal, JSON lines otherwise.")] = "auto",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    context.interactive = logs.setup(log_format, verbose, err)


def parse_since(text: str, now: datetime | None = None) -> int:
    """``--since``: an ISO-8601 date/time (UTC unless it says otherwise) or a duration ago (6h, 2d)."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
        moment = now - timedelta(**{unit: int(match[1])})
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ConfigError(f"--since {text!r} is neither an ISO-8601 time (2026-11-26T12:00:00Z) "
                              "nor a duration (90m, 6h, 2d)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    if moment > now:
        raise ConfigError(f"--since {text!r} is in the future")
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def split_names(products: str | None) -> list[str] | None:
    if products is None:
        return None
    names = [p.strip() for p in products.split(",") if p.strip()]
    if not names:
        raise ConfigError("--products is empty")
    return names


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (docker stop, ECS) gets the same graceful stop as Ctrl-C."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

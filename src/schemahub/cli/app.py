"""The ``schemahub`` Typer app and what every command shares.

Errors are translated to messages and exit codes in one place (``errors``):
0 success, 1 a run or check failed (details printed), 2 bad input or configuration,
3 another run of the same job (or a rewrite of the table) holds its lock, 4 done but
something needs attention (quarantined raw files), 130 interrupted. No command prints a
traceback: an unexpected failure is one line (``-v`` logs the traceback).
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
import typer.core
from rich.console import Console

from schemahub.cli import logs
from schemahub.errors import ConfigError, SchemahubError
from schemahub.infra.storage import storage_error
from schemahub.settings import Settings
from schemahub.sources.registry import list_exchanges
from schemahub.stop import StopToken
from schemahub.timeutil import duration

if TYPE_CHECKING:
    from typer._click.core import Context  # typer vendors click: its Context is this one

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("schemahub.cli")

PIPELINE_ORDER = (
    "run", "update-seed", "ingest", "repair", "transform", "compact", "certify", "check", "query",
    "export", "quarantine", "checkpoints",
    "locks", "dashboard", "serve", "init-cloud", "athena-ddl", "doctor", "simulate", "version",
)
"""Commands as ``--help`` lists them: the order data flows through them, then tools."""


class _PipelineOrder(typer.core.TyperGroup):
    def list_commands(self, ctx: Context) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(PIPELINE_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


app = typer.Typer(
    name="schemahub", no_args_is_help=True, add_completion=False, rich_markup_mode=None, cls=_PipelineOrder,
    help="Exactly-once crypto trade data: exchange REST APIs -> immutable raw lake -> one table.",
)
checkpoints_app = typer.Typer(no_args_is_help=True, help="Inspect or repair per-product watermarks.")
app.add_typer(checkpoints_app, name="checkpoints")
quarantine_app = typer.Typer(
    no_args_is_help=True, help="Raw files the transform could not use: list them, release them for repair.")
app.add_typer(quarantine_app, name="quarantine")

err = Console(stderr=True)
# Piped output (CI logs, `| less`) gets wide tables instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 200)

LakeOption = Annotated[str | None, typer.Option(
    "--lake", help="Lake location: a local directory or s3://bucket/prefix (default: SCHEMAHUB_LAKE, "
                   "else ./lake). Before or after the command.")]
ExchangeOption = Annotated[str, typer.Option(
    "--exchange", "-e", help=f"Exchange name: {', '.join(list_exchanges())}.")]
ExchangesOption = Annotated[str, typer.Option(
    "--exchange", "-e", help=f"Exchange(s): {', '.join(list_exchanges())}; several with commas, or all.")]
ProductsOption = Annotated[str | None, typer.Option(
    "--products", "-p", help="Comma-separated products: symbols (BTC-USD) or the exchange's ids (XBTUSDT).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
WideOption = Annotated[bool, typer.Option("--wide", help="Every column, however wide the terminal.")]


class _Context:
    interactive = False
    lake: str | None = None
    """``--lake`` given before the command (the command's own ``--lake`` wins)."""


context = _Context()


def settings_for(lake: str | None) -> Settings:
    """The settings, parsed once per command: flags over the environment over defaults."""
    return Settings.load(lake or context.lake)


def errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Translate every failure into one clear line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SchemahubError as exc:
            fail(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except OSError as exc:  # a filesystem failure no lower layer expected (a file we were given)
            translated = storage_error(exc, exc.filename or "?", "cannot use")
            fail(translated)
            raise typer.Exit(translated.exit_code) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a bug: one line, the traceback only in the log at -v
            log.debug("unexpected failure", exc_info=True)
            err.print(f"[bold red]error:[/] internal error: {type(exc).__name__}: {exc} (run with -v for "
                      "the traceback, and please report it)", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def fail(exc: BaseException | str) -> None:
    err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)


@app.callback()
def _main(
    log_format: Annotated[logs.LogFormat, typer.Option(
        "--log-format", help="auto: rich on a terminal, JSON lines otherwise.")] = "auto",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    lake: LakeOption = None,
) -> None:
    context.interactive = logs.setup(log_format, verbose, err)
    context.lake = lake


def parse_since(text: str, now: datetime | None = None) -> int:
    """``--since``: an ISO-8601 date/time (UTC unless it says otherwise) or a duration ago (6h, 2d)."""
    now = now or datetime.now(UTC)
    ago = duration(text)
    if ago is not None:
        moment = now - ago
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


def parse_duration(text: str, option: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d``."""
    span = duration(text)
    if not span:  # None, or zero
        raise ConfigError(f"{option} {text!r} is not a duration like 90m, 2h or 1d")
    return span


def split_names(products: str | None) -> list[str] | None:
    if products is None:
        return None
    names = [p.strip() for p in products.split(",") if p.strip()]
    if not names:
        raise ConfigError("--products is empty")
    return names


@contextmanager
def stop_on_signals() -> Iterator[StopToken]:
    """SIGINT (Ctrl-C) and SIGTERM (docker stop, ECS) ask the run to stop: work in flight is
    abandoned, what was committed stays, and the command prints its interrupted summary. A
    second signal stops at once."""
    stop = StopToken()

    def handler(signum: int, _frame: Any) -> None:
        if stop.stopped:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        stop.stop(f"received {name}")
        err.print(f"{name}: stopping (work in flight is abandoned; committed work is kept). "
                  "Again to stop at once.")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def plain_metavars(command: Any) -> Any:
    """Help shows ``--since SINCE`` and ``--format table|csv|json|parquet``, never Python type
    names such as ``<str>`` or ``<list[str]>`` (Typer's default)."""
    for param in getattr(command, "params", []):
        if param.param_type_name == "argument":
            param.display_type_rich = lambda ctx: None  # its name (SQL, FILE...) says enough
            continue
        if param.metavar is None and not getattr(param, "is_flag", False) and param.name:
            shown = param.display_type(None) if hasattr(param, "display_type") else ""
            choices = shown.strip("<>") if "|" in shown and "[" not in shown else None
            param.metavar = choices or param.name.upper().replace("_", "-")
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)
    return command


_GLOBAL_FLAGS = ("-v", "--verbose")
_GLOBAL_VALUES = ("--log-format",)


def hoist_global_options(argv: list[str]) -> list[str]:
    """Let ``-v`` and ``--log-format X`` come after the command too (as README shows):
    they move in front of it, where the app's callback reads them."""
    front, rest, index = [], [], 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            rest.extend(argv[index:])
            break
        if arg in _GLOBAL_FLAGS:
            front.append(arg)
        elif arg in _GLOBAL_VALUES and index + 1 < len(argv):
            front += [arg, argv[index + 1]]
            index += 1
        elif arg.startswith(tuple(f"{name}=" for name in _GLOBAL_VALUES)):
            front.append(arg)
        else:
            rest.append(arg)
        index += 1
    return front + rest

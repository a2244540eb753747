"""Logging: readable lines on a terminal, one JSON object per line everywhere else."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Literal

import orjson
from rich.console import Console
from rich.logging import RichHandler

from schemahub.http.client import redact_url

LogFormat = Literal["auto", "text", "json"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}`` with URLs redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_url(record.getMessage()),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _RedactingRichHandler(RichHandler):
    def emit(self, record: logging.LogRecord) -> None:
        record.msg = redact_url(record.getMessage())
        record.args = None
        super().emit(record)


def setup(fmt: LogFormat, verbose: bool, console: Console) -> bool:
    """Configure the root logger; return True when the terminal UI (bars, tables) is on."""
    interactive = fmt == "text" or (fmt == "auto" and sys.stderr.isatty())
    handler: logging.Handler
    if interactive:
        handler = _RedactingRichHandler(console=console, show_path=False, markup=False,
                                        rich_tracebacks=False, log_time_format="%H:%M:%S")
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Libraries' debug output stays off even with -v: it is noisy, and botocore's logs
    # request headers (Authorization, security tokens) and signed URLs.
    for noisy in ("httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return interactive

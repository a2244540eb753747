"""``schemahub doctor``: is this installation able to run, and is its configuration right?

The container image's health check runs ``doctor --offline``: the native engines load, every
connector and mapping parses, the settings validate. Without ``--offline`` it also opens
the lake the settings point at (the bucket and the lock table answer, credentials are
accepted) - the first thing to run after a deployment.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass

from schemahub.config import Settings
from schemahub.errors import SchemahubError


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str


def _engines() -> str:
    from schemahub.infra.duck import connect

    con = connect(extensions=("delta", "httpfs"))
    con.close()
    versions = {p: importlib.metadata.version(p) for p in ("duckdb", "deltalake", "pyarrow")}
    return ", ".join(f"{k} {v}" for k, v in versions.items()) + " (DuckDB delta and httpfs load)"


def _connectors() -> str:
    from schemahub.sources.registry import list_exchanges, source_class
    from schemahub.transform.mapping import packaged

    loaded = []
    for name in list_exchanges():
        cls = source_class(name)
        for endpoint in cls.endpoints:
            packaged(name, endpoint)
        loaded.append(f"{name} ({', '.join(cls.endpoints)})")
    return "; ".join(loaded)


def _settings(settings: Settings) -> Callable[[], str]:
    def run() -> str:
        from schemahub.sources.registry import list_exchanges, source_class

        for name in list_exchanges():
            cls = source_class(name)
            settings.exchange_endpoint(cls)
            settings.client_config(cls)
        metrics = "cloudwatch EMF" if settings.emit_metrics else "none"
        return f"lake {settings.lake}; metrics {metrics}"
    return run


def _lake(settings: Settings) -> Callable[[], str]:
    def run() -> str:
        from schemahub.pipeline import open_lake

        lake = open_lake(settings)
        return f"{settings.lake} answers; leases in {type(lake.locks).__name__}"
    return run


def diagnose(settings: Settings, *, offline: bool) -> list[Finding]:
    probes: list[tuple[str, Callable[[], str]]] = [
        ("engines", _engines), ("connectors", _connectors), ("settings", _settings(settings))]
    if not offline:
        probes.append(("lake", _lake(settings)))
    findings = []
    for name, probe in probes:
        try:
            findings.append(Finding(name, True, probe()))
        except (SchemahubError, ImportError, OSError) as exc:
            findings.append(Finding(name, False, str(exc)))
    return findings

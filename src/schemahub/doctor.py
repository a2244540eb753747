"""``schemahub doctor``: is this installation able to run, and is its configuration right?

The container image's health check runs ``doctor --offline``: the native engines load, every
connector and mapping parses, the settings validate. Without ``--offline`` it also opens
the lake the settings point at (the bucket and the lock table answer, credentials are
accepted) - the first thing to run after a deployment.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from schemahub.errors import ConfigError, SchemahubError
from schemahub.settings import Settings


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


def _settings(problems: list[str], settings: Settings) -> Callable[[], str]:
    def run() -> str:
        from schemahub.ingest.connect import client_config
        from schemahub.sources.registry import list_exchanges, source_class

        if problems:
            raise ConfigError("; ".join(problems))
        for name in list_exchanges():
            client_config(settings, source_class(name))
        metrics = "cloudwatch EMF" if settings.metrics.cloudwatch else "none"
        return f"lake {settings.lake}; metrics {metrics}"
    return run


def _lake(settings: Settings) -> Callable[[], str]:
    def run() -> str:
        from schemahub.pipeline import open_backends

        backends = open_backends(settings, create=False)
        return f"{settings.lake} answers; leases in {type(backends.locks).__name__}"
    return run


def lenient_settings(lake: str | None, env: Mapping[str, str]) -> tuple[Settings, list[str]]:
    """The settings, leaving out each variable that does not parse (and saying why), so the
    other probes can still run."""
    remaining = dict(env)
    problems: list[str] = []
    for _ in range(len(remaining) + 1):
        try:
            return Settings.load(lake, remaining), problems
        except ConfigError as exc:
            problems.append(str(exc))
            bad = next((name for name in remaining if name in str(exc)), None)
            if bad is None:
                break
            remaining.pop(bad)
    return Settings(), problems


def diagnose(lake: str | None, env: Mapping[str, str], *, offline: bool) -> list[Finding]:
    settings, problems = lenient_settings(lake, env)
    probes: list[tuple[str, Callable[[], str]]] = [
        ("engines", _engines), ("connectors", _connectors), ("settings", _settings(problems, settings))]
    if not offline:
        probes.append(("lake", _lake(settings)))
    findings = []
    for name, probe in probes:
        try:
            findings.append(Finding(name, True, probe()))
        except (SchemahubError, ImportError, OSError) as exc:
            findings.append(Finding(name, False, str(exc)))
    return findings

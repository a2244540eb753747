"""The shape of the code: layers without cycles, and venues described in one place each."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from schemahub.infra.aws import Aws
from schemahub.sources.registry import EXCHANGES, list_exchanges, spec

SRC = Path(__file__).parents[2] / "src" / "schemahub"
LAYERS = ("metrics", "quality", "query", "infra", "ingest")


def _imports(path: Path) -> set[str]:
    """Every schemahub module ``path`` imports (type-checking-only imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("schemahub"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("schemahub"))
    return found


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (SRC / parts[1]).is_dir()) else None


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC).parts
        if len(relative) < 2:
            continue  # top-level modules (pipeline, settings, errors, ...) are not packages
        package = relative[0]
        for module in _imports(path):
            other = _package_of(module)
            if other is not None and other != package:
                graph[package].add(other)
    return graph


def test_no_import_cycles_between_the_layers() -> None:
    graph = _package_graph()
    for start in LAYERS:
        seen: set[str] = set()
        frontier = [start]
        while frontier:
            package = frontier.pop()
            for other in graph.get(package, ()):
                assert other != start or package == start, f"{start} reaches itself through {package}"
                if other not in seen:
                    seen.add(other)
                    frontier.append(other)
        assert start not in seen, f"import cycle through {start}: it depends on itself via {sorted(seen)}"


def test_metrics_import_no_stage_and_query_no_metrics() -> None:
    graph = _package_graph()
    stages = {"ingest", "transform", "quality", "query", "table", "sources"}
    assert not graph["metrics"] & stages, graph["metrics"]
    assert "metrics" not in graph["query"]


def _code_names(path: Path) -> list[tuple[int, str]]:
    """Names, and string literals that are identifiers, keys or paths (no spaces), in ``path``:
    what code uses to enumerate venues. Docstrings, comments and prose are left out."""
    tree = ast.parse(path.read_text())
    prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose \
                and not any(c.isspace() for c in node.value):
            found.append((node.lineno, node.value.lower()))
        elif isinstance(node, ast.Name):
            found.append((node.lineno, node.id.lower()))
    return found


@pytest.mark.parametrize("venue", list_exchanges())
def test_a_venue_is_described_only_in_its_own_files(venue: str) -> None:
    """Adding a venue = its connector, simulator and mappings, plus one registry line: no
    other source file names it (the settings, CLI help, simulators, tests, demo and
    benchmarks all derive from the registry and the venue's spec)."""
    own = {SRC / "sources" / "registry.py", *SRC.rglob(f"{venue}.py"), *SRC.rglob(f"{venue}_*.py")}
    offenders = []
    for path in SRC.rglob("*.py"):
        if path in own:
            continue
        for line, text in _code_names(path):
            if venue in text:
                offenders.append(f"{path.relative_to(SRC)}:{line}: {text[:60]!r}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("venue", list_exchanges())
def test_every_registry_line_names_a_spec_with_all_its_parts(venue: str) -> None:
    described = spec(venue)
    assert EXCHANGES[venue] == f"schemahub.sources.{venue}:SPEC"
    simulator = described.simulator_class()
    assert simulator.name == venue and simulator.default_products and simulator.test_products
    assert set(simulator.traded) <= {p.symbol for p in simulator.test_products}
    assert described.demo.seed_filter
    # a documented REST ceiling to benchmark against - or an archive as the only history
    archive_only = described.connector.paging == "archive" and described.archive is not None
    assert described.ceiling_trades_per_s > 0 or archive_only


def test_the_command_line_starts_without_the_table_engines() -> None:
    """Every CLI call (and there are many in a routine or a test run) pays for what the command
    modules import: DuckDB, delta-rs, Arrow datasets (which pull pandas in) and boto3 are loaded
    by the commands that use them, not by ``schemahub --help`` or ``ingest``."""
    heavy = ["duckdb", "deltalake", "pyarrow.dataset", "pandas", "polars", "boto3", "plotly"]
    probe = ("import sys, schemahub.cli.main, schemahub.pipeline, schemahub.ingest.exchanges; "
             f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", f"loaded at start: {loaded.stdout}"


def test_aws_sessions_share_one_loader_of_service_descriptions() -> None:
    """Each boto3 session would parse the S3 model and endpoint rules again (~0.1 s): a process
    that opens a lake per product did that per product."""
    first = Aws(region="us-east-1", access_key_id="k", secret_access_key="s")
    second = Aws(region="eu-west-1", access_key_id="k2", secret_access_key="s2")
    loaders = {id(aws._session._session.get_component("data_loader")) for aws in (first, second)}
    assert len(loaders) == 1
    assert first.s3().meta.region_name == "us-east-1" and second.s3().meta.region_name == "eu-west-1"

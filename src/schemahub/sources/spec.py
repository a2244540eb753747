"""``ExchangeSpec``: everything SchemaHub knows about one venue, in one place.

A venue is described once, in its own connector module (``sources/<name>.py`` ends with
``SPEC = ExchangeSpec(...)``), and registered by one line in ``sources/registry.py``.
Everything that enumerates venues derives from the specs: the settings
(``SCHEMAHUB_<NAME>_URL`` ...), the CLI's help, the simulators, the contract tests, the
demo and the benchmarks. What the connector itself declares (base URL, documented and
client limits, endpoints, page size) stays on the connector class; the spec adds what
the rest of the system needs to know about the venue.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schemahub.simulator.wire import SimulatedExchange
    from schemahub.sources.archive import ArchiveSource
    from schemahub.sources.base import TradeSource


@dataclass(frozen=True)
class ThrottleTest:
    """How the contract suite makes the simulator throttle this venue's client."""

    faults: dict[str, Any]
    """Simulator fault settings (``schemahub.simulator.server.Faults`` fields) that throttle."""
    client_rate: float
    """Requests/s the client is told to run: several times what ``faults`` allows."""


@dataclass(frozen=True)
class DemoSpec:
    """The venue in ``make demo``: simulated history and the products its seed takes."""

    history_scale: float
    seed_filter: str
    history_days: float | None = None
    """Spread the simulated history over this many days (a venue with a bulk archive: the
    demo backfills its older days from the archive after the REST run)."""


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    title: str
    """The venue's name for people (``Coinbase Exchange``)."""
    connector: type[TradeSource]
    simulator: str
    """``module:Class`` of its simulator (imported only when a simulator is wanted)."""
    throttle_test: ThrottleTest
    demo: DemoSpec
    ban_test: dict[str, Any] | None = None
    """Simulator fault settings under which the venue bans the client (None: it never bans)."""
    archive: str | None = None
    """``module:Class`` of its bulk-archive source (None: the venue publishes none)."""
    ceiling_trades_per_s: float = 0.0
    """The documented public ceiling in trades/s (the benchmark's reference)."""
    bench_history_scale: float = 1.0
    """History the ingest benchmark simulates: about a minute at the ceiling."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.connector.name != self.name:
            raise ValueError(f"spec {self.name!r} wraps connector {self.connector.name!r}")

    def archive_class(self) -> type[ArchiveSource] | None:
        if self.archive is None:
            return None
        module, _, name = self.archive.partition(":")
        cls: type[ArchiveSource] = getattr(importlib.import_module(module), name)
        return cls

    def simulator_class(self) -> type[SimulatedExchange]:
        module, _, name = self.simulator.partition(":")
        cls: type[SimulatedExchange] = getattr(importlib.import_module(module), name)
        return cls

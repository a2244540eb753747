"""Shared fixtures: an isolated environment, and simulators on a frozen clock."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from schemahub.simulator.server import Faults, ManualClock, Simulator
from tests.helpers import PRODUCTS_FOR, SIM_START


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SCHEMAHUB_* setting of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("SCHEMAHUB_"):
            monkeypatch.delenv(name)


SimFactory = Callable[..., Simulator]


@pytest.fixture
def make_sim() -> Iterator[SimFactory]:
    """Start simulators on a ManualClock (the head moves only when a test advances it)."""
    started: list[Simulator] = []

    def factory(products: Any = None, faults: Faults | None = None, seed: int = 7,
                start: float = SIM_START, exchange: str = "coinbase") -> Simulator:
        products = PRODUCTS_FOR[exchange] if products is None else products
        sim = Simulator(exchange, products, seed=seed, clock=ManualClock(start),
                        faults=faults or Faults(rate_limit=False)).start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim: SimFactory) -> Simulator:
    return make_sim()

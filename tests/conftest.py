"""Shared fixtures: an isolated environment, simulators on a frozen clock, and lakes.

``lake`` runs a test twice: on a local folder, and on an S3 bucket with DynamoDB locks
served by a real moto server (tests.lakes). ``s3_lake`` is the S3 one alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from schemahub.simulator.server import Faults, ManualClock, Simulator
from schemahub.sources.registry import list_exchanges, source_class
from tests.helpers import PRODUCTS_FOR, SIM_START
from tests.lakes import LakeRef, MotoServer, new_s3_lake, wait_until_up

_MOTO_URL = os.environ.get("SCHEMAHUB_TEST_MOTO_URL")  # read before _clean_environ runs
TEST_PAGE_LIMIT = 1000
"""In-process tests page every venue with at most this many trades a page (only Bitfinex
pages more, 10,000): small test histories then still span many pages and their seams."""


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SCHEMAHUB_* or AWS_* setting of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("SCHEMAHUB_", "AWS_")):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list_exchanges():
        cls = source_class(name)
        if cls.page_limit > TEST_PAGE_LIMIT:
            monkeypatch.setattr(cls, "page_limit", TEST_PAGE_LIMIT)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server: CI's (SCHEMAHUB_TEST_MOTO_URL), or one started for this session."""
    if _MOTO_URL:
        wait_until_up(_MOTO_URL)
        yield _MOTO_URL
        return
    server = MotoServer()
    yield server.url
    server.stop()


@pytest.fixture
def s3_lake(moto_url: str) -> LakeRef:
    return new_s3_lake(moto_url)


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> LakeRef:
    if request.param == "local":
        return LakeRef(str(tmp_path / "lake"))
    return new_s3_lake(request.getfixturevalue("moto_url"))


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

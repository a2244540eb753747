"""Chunk planner, watermark contiguity and the time -> id binary search (pure logic)."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemahub.ingest.plan import (
    Chunk,
    Contiguity,
    count_chunks,
    default_concurrency,
    plan_chunks,
)
from schemahub.sources.base import RangeFetch, RawTrade, TradeRef, first_id_at_or_after


def test_chunks_follow_the_dense_id_grid_and_stop_at_the_head() -> None:
    chunks = list(plan_chunks(5000, 7500, 1000))
    assert chunks == [Chunk(5000, 6000), Chunk(6000, 7000), Chunk(7000, 7500)]
    # chunk k is fetched with after = W + 1000(k+1) + 1, i.e. hi + 1
    assert [c.hi + 1 for c in chunks] == [6001, 7001, 7501]
    assert count_chunks(5000, 7500, 1000) == 3
    assert list(plan_chunks(7500, 7500, 1000)) == [] and count_chunks(7500, 7000, 1000) == 0


@given(st.integers(0, 10**12), st.integers(0, 50_000), st.integers(1, 2000))
def test_chunks_tile_the_range_exactly(watermark: int, span: int, size: int) -> None:
    chunks = list(plan_chunks(watermark, watermark + span, size))
    assert sum(c.size for c in chunks) == span
    assert all(a.hi == b.lo for a, b in itertools.pairwise(chunks))
    assert all(0 < c.size <= size for c in chunks)
    assert len(chunks) == count_chunks(watermark, watermark + span, size)


def test_watermark_advances_only_over_the_contiguous_prefix() -> None:
    tracker: Contiguity[str] = Contiguity(0)
    tracker.complete(Chunk(1000, 2000), "b")
    tracker.complete(Chunk(2000, 3000), "c")
    assert tracker.advance() == [] and tracker.watermark == 0 and tracker.pending == 2
    tracker.complete(Chunk(0, 1000), "a")
    assert [p for _, p in tracker.advance()] == ["a", "b", "c"]
    assert tracker.watermark == 3000 and tracker.pending == 0
    with pytest.raises(ValueError, match="twice"):
        tracker.complete(Chunk(0, 1000), "again")


@given(st.permutations(list(range(12))))
def test_any_completion_order_ends_at_the_same_watermark(order: list[int]) -> None:
    chunks = list(plan_chunks(0, 12_000, 1000))
    tracker: Contiguity[int] = Contiguity(0)
    seen: list[int] = []
    for index in order:
        tracker.complete(chunks[index], index)
        seen += [p for _, p in tracker.advance()]
        # never ahead of the first missing chunk
        assert tracker.watermark == chunks[len(seen) - 1].hi if seen else tracker.watermark == 0
    assert seen == list(range(12)) and tracker.watermark == 12_000


def test_missing_ranges_of_a_fetched_range() -> None:
    trades = [RawTrade(i, {}) for i in (3, 4, 7, 8)]
    assert RangeFetch(1, 10, trades).missing_ranges() == [(2, 2), (5, 6), (9, 10)]
    assert RangeFetch(1, 5, []).missing_ranges() == [(2, 5)]
    assert RangeFetch(0, 3, [RawTrade(i, {}) for i in (1, 2, 3)]).missing_ranges() == []


# -- time -> id search -------------------------------------------------------------------


def _market(n: int, seed: int, gaps: float = 0.01) -> list[TradeRef]:
    rng = random.Random(seed)
    refs, trade_id, t = [], 1, 1_000_000
    for _ in range(n):
        if rng.random() < gaps:
            trade_id += rng.randint(1, 30)  # skipped ids
        t += rng.choice([0, 0, 1, 500, 20_000])  # several trades can share a microsecond
        refs.append(TradeRef(trade_id, t))
        trade_id += 1
    return refs


def _window(refs: list[TradeRef], page: int, calls: list[int]) -> Callable[[int], list[TradeRef]]:
    ids = [r.trade_id for r in refs]

    def window(at: int) -> list[TradeRef]:
        calls.append(at)
        stop = bisect.bisect_right(ids, at)
        return refs[max(0, stop - page):stop]

    return window


@pytest.mark.parametrize("seed", range(8))
def test_binary_search_finds_the_first_trade_at_or_after(seed: int) -> None:
    refs = _market(20_000, seed)
    rng = random.Random(seed)
    for _ in range(25):
        target = rng.randint(refs[0].time_us - 10, refs[-1].time_us + 10)
        calls: list[int] = []
        found = first_id_at_or_after(_window(refs, 1000, calls), refs[-1], target)
        expected = next((r.trade_id for r in refs if r.time_us >= target), refs[-1].trade_id + 1)
        assert found == expected, (target, found, expected)
        assert len(calls) <= 20  # log2(ids / page) plus a few


def test_search_before_history_starts_at_the_first_trade() -> None:
    refs = _market(5000, 1)
    found = first_id_at_or_after(_window(refs, 1000, []), refs[-1], 0)
    assert found == refs[0].trade_id


def test_search_after_the_head_returns_head_plus_one() -> None:
    refs = _market(5000, 2)
    found = first_id_at_or_after(_window(refs, 1000, []), refs[-1], refs[-1].time_us + 1)
    assert found == refs[-1].trade_id + 1


def test_default_concurrency_by_littles_law() -> None:
    # Coinbase: 10 req/s x 0.25 s = 2.5 in flight; twice that, rounded up
    assert default_concurrency(10.0, 0.25, products=3) == (3, 5)
    assert default_concurrency(10.0, 0.25, products=40) == (4, 5)
    assert default_concurrency(1.0, 0.25, products=1) == (1, 2)
    assert default_concurrency(None, 0.25, products=2) == (2, 8)

"""A venue's aggregate rows that are not the documented arrays are a malformed answer (retried
like a truncated body), never an uncaught KeyError or IndexError."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemahub.errors import MalformedResponse
from schemahub.http.client import JsonResponse
from schemahub.sources.aggregates import VenueBucket, parse_rows


def _response(data: Any) -> JsonResponse:
    return JsonResponse(data, 200, {}, "http://venue/candles", datetime.now(UTC), 0.01, 10)


def _bucket(row: list[Any]) -> VenueBucket:
    return VenueBucket(int(row[0]) * 1000, None, float(row[5]))


def test_candle_rows_become_buckets() -> None:
    rows = [["1763942400000", "1", "2", "0.5", "1.5", "0.25", "x", "x", "1"]]
    assert parse_rows(_response(rows), "okx", rows, "candle", 6, _bucket) == [
        VenueBucket(1763942400000000, None, 0.25)]


@pytest.mark.parametrize("rows", [{"ts": 1}, [{"ts": "1"}], [["1", "2"]], [["x", "1", "2", "3", "4", "5"]],
                                  [["1", "1", "2", "3", "4", None]]])
def test_anything_else_is_a_malformed_answer(rows: Any) -> None:
    with pytest.raises(MalformedResponse, match="okx sent an unexpected body for http://venue/candles"):
        parse_rows(_response(rows), "okx", rows, "candle", 6, _bucket)

"""Transform rounds: which products a process leases, and when it plans another round."""

from __future__ import annotations

from datetime import date

from schemahub.raw.layout import RawKey
from schemahub.transform.claims import Claims
from schemahub.transform.plan import ProductPlan, Watermark


def _plan(symbol: str, ids: int) -> ProductPlan:
    files = [RawKey("coinbase", symbol, date(2026, 11, 1), 1, ids)]  # type: ignore[arg-type]
    return ProductPlan("coinbase", symbol, Watermark(0, ids), None, files)


def test_a_round_leases_products_until_its_budget_and_skips_held_ones() -> None:
    held_elsewhere = {("coinbase", "ETH-USD")}
    taken: list[str] = []
    returned: list[str] = []

    def take(exchange: str, symbol: str) -> bool:
        if (exchange, symbol) in held_elsewhere:
            return False
        taken.append(symbol)
        return True

    claims = Claims(take, lambda _, symbol: returned.append(symbol), round_ids=150)
    plans = [_plan("BTC-USD", 100), _plan("ETH-USD", 100), _plan("SOL-USD", 100), _plan("ADA-USD", 10)]
    first = claims.choose(plans)
    assert [p.symbol for p in first] == ["BTC-USD", "SOL-USD"]  # 200 ids: the round is full after SOL
    assert claims.more and claims.skipped == {("coinbase", "ETH-USD")}
    # A lost commit race plans the same round again: the products it holds stay its own.
    assert [p.symbol for p in claims.choose(plans)] == ["BTC-USD", "SOL-USD"]
    assert taken == ["BTC-USD", "SOL-USD"]
    claims.end_round()
    assert returned == ["BTC-USD", "SOL-USD"] and not claims.held
    held_elsewhere.clear()  # the other process finished ETH-USD's round meanwhile
    second = claims.choose(plans)
    assert ([p.symbol for p in second], claims.more) == (["ETH-USD", "ADA-USD"], False)
    claims.end_round()
    assert claims.choose(plans) == []


def test_without_sharing_everything_is_one_round() -> None:
    claims = Claims.everything()
    plans = [_plan(symbol, 10**9) for symbol in ("BTC-USD", "ETH-USD")]
    assert claims.choose(plans) == plans and not claims.more

"""Deterministic, seeded trade streams: the simulator's ground truth.

A product's stream is a pure function of (seed, product spec): the n-th trade always has
the same id, time offset, price, size and side. Taker orders sweep 1-5 resting orders,
so several trades share one microsecond; the price is a random walk on the product's
tick; sizes are log-normal; now and then the exchange skips an id.

Which trades *exist* depends on a clock: the stream is anchored so that ``history``
trades lie in the past when the simulator starts, and the head grows as the clock
moves (tests drive a ``ManualClock``; the CLI uses wall time).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import random
import threading
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

IdFormat = Literal["number", "string", "mixed"]
MS_CLOCK_ALWAYS = 1 << 62
"""``ProductSpec.ms_clock_before_us`` of a venue whose times are whole milliseconds."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ProductSpec:
    symbol: str
    start_price: float
    price_decimals: int = 2
    size_decimals: int = 8
    mean_size: float = 0.05
    trades_per_s: float = 5.0
    history: int = 20_000
    first_id: int = 1
    gap_rate: float = 1e-4
    """Probability that the exchange skips an id before a trade."""
    id_format: IdFormat = "number"
    status: str = "online"
    trading_disabled: bool = False
    cancel_only: bool = False
    native_id: str = ""
    """The exchange's own product id (BTCUSDT, XBTUSD); empty: the symbol itself."""
    base_code: str = ""
    quote_code: str = ""
    """The exchange's asset codes (Kraken: XBT); empty: from the symbol."""
    legacy_ids: bool = False
    """Kraken: serve the old 6-element rows that carry no trade id."""
    legacy_below_id: int = 0
    """Kraken: trades with an id below this come without it (old data); newer ones with it."""
    ms_clock_before_us: int = 0
    """Trades before this time carry whole milliseconds (Binance: its clock became µs on
    2025-01-01); 0: microseconds throughout."""
    daily_ids: bool = False
    """Ids number the trades of each UTC day from 1, as ``YYYYMMDD`` x 10^9 + n (Bybit's archive
    numbers the rows of each day's file; SchemaHub's trade ids for it are built this way)."""

    @property
    def base(self) -> str:
        return self.base_code or self.symbol.split("-")[0]

    @property
    def quote(self) -> str:
        return self.quote_code or self.symbol.split("-")[1]

    @property
    def native(self) -> str:
        return self.native_id or self.symbol


@dataclass(frozen=True)
class Trade:
    """One simulated trade in exchange-neutral form."""

    trade_id: int
    time_us: int
    price_units: int
    size_units: int
    taker_side: Literal["buy", "sell"]
    price_decimals: int
    size_decimals: int
    rank: int = 0
    """Earlier fills in the same microsecond (exchanges with ns clocks tell them apart)."""

    @property
    def price(self) -> str:
        return _decimal(self.price_units, self.price_decimals)

    @property
    def size(self) -> str:
        return _decimal(self.size_units, self.size_decimals)

    @property
    def maker_side(self) -> Literal["buy", "sell"]:
        return "sell" if self.taker_side == "buy" else "buy"

    @property
    def iso_time(self) -> str:
        return iso_time(self.time_us)


def iso_time(time_us: int) -> str:
    """ISO-8601 UTC with trailing zeros of the fraction trimmed: 0-6 fractional digits."""
    seconds, micros = divmod(time_us, 1_000_000)
    fraction = f"{micros:06d}".rstrip("0")
    return f"{_second(seconds)}.{fraction}Z" if fraction else f"{_second(seconds)}Z"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def _decimal(units: int, decimals: int) -> str:
    if decimals == 0:
        return str(units)
    text = str(units).rjust(decimals + 1, "0")
    return f"{text[:-decimals]}.{text[-decimals:]}"


def decimal_text(units: int, decimals: int, shown: int) -> str:
    """``units`` x 10^-decimals written with exactly ``shown`` decimals (rounded half up)."""
    if shown >= decimals:
        return _decimal(units * 10 ** (shown - decimals), shown)
    scale = 10 ** (decimals - shown)
    return _decimal((units + scale // 2) // scale, shown)


def plain_number(units: int, decimals: int) -> str:
    """``units`` x 10^-decimals without trailing zeros, as several venues write numbers (73218, 0.65)."""
    text = decimal_text(units, decimals, decimals)
    return text.rstrip("0").rstrip(".") if "." in text else text


class TradeStream:
    """The trades of one product, generated lazily in blocks and cached (thread-safe)."""

    _BLOCK = 4096

    def __init__(self, spec: ProductSpec, seed: int) -> None:
        self.spec = spec
        digest = hashlib.sha256(f"{seed}:{spec.symbol}".encode()).digest()
        self._rng = random.Random(int.from_bytes(digest[:8], "big"))
        self._lock = threading.Lock()
        self.ids = array("q")
        self.offsets_us = array("q")  # time since the first trade
        self.prices = array("q")
        self._sizes = array("q")
        self.sides = bytearray()  # 1 = taker bought
        self._next_id = spec.first_id
        self._offset = 0
        self._price = round(spec.start_price * 10 ** spec.price_decimals)
        self._fills_left = 0
        self._order_side = 1

    def ensure(self, count: int) -> None:
        """Generate at least ``count`` trades."""
        if len(self.ids) >= count:
            return
        with self._lock:
            while len(self.ids) < count:
                self._generate(self._BLOCK)

    def ensure_offset(self, offset_us: int) -> None:
        """Generate every trade with a time offset <= ``offset_us`` (and one beyond)."""
        with self._lock:
            while not self.offsets_us or self.offsets_us[-1] <= offset_us:
                self._generate(self._BLOCK)

    def _generate(self, n: int) -> None:
        spec, rng = self.spec, self._rng
        mean_gap_us = 1e6 / spec.trades_per_s
        tick_sigma = max(1.0, self._price * 0.00005)
        size_scale = spec.mean_size * 10 ** spec.size_decimals
        for _ in range(n):
            if self._fills_left == 0:  # a new taker order arrives
                self._fills_left = min(5, 1 + int(rng.expovariate(1.2)))
                self._order_side = 1 if rng.random() < 0.5 else 0
                self._offset += int(rng.expovariate(1.0) * mean_gap_us * 1.6) + 1
                self._price = max(1, self._price + round(rng.gauss(0, tick_sigma)))
            else:  # the same order fills the next resting order: same microsecond
                self._price = max(1, self._price + (1 if self._order_side else -1) * rng.randint(0, 1))
            self._fills_left -= 1
            if rng.random() < spec.gap_rate:
                self._next_id += 1  # an id the exchange never publishes
            self.ids.append(self._next_id)
            self._next_id += 1
            self.offsets_us.append(self._offset)
            self.prices.append(self._price)
            self._sizes.append(max(1, round(rng.lognormvariate(0, 1.0) * size_scale / 1.65)))
            self.sides.append(self._order_side)

    def trade(self, index: int, anchor_us: int) -> Trade:
        spec = self.spec
        time_us = anchor_us + self.offsets_us[index]
        if time_us < spec.ms_clock_before_us:
            time_us -= time_us % 1000
        trade_id = self._daily_id(index, time_us, anchor_us) if spec.daily_ids else self.ids[index]
        return Trade(trade_id, time_us, self.prices[index],
                     self._sizes[index], "buy" if self.sides[index] else "sell",
                     spec.price_decimals, spec.size_decimals, self.rank_in_microsecond(index))

    def _daily_id(self, index: int, time_us: int, anchor_us: int) -> int:
        day_start_us = time_us - time_us % 86_400_000_000
        first = bisect.bisect_left(self.offsets_us, day_start_us - anchor_us, 0, index + 1)
        day = datetime.fromtimestamp(day_start_us / 1_000_000, UTC)
        return int(day.strftime("%Y%m%d")) * 1_000_000_000 + index - first + 1

    def rank_in_microsecond(self, index: int) -> int:
        """How many earlier trades share this trade's microsecond (fills of one taker order)."""
        rank = 0
        while index - rank > 0 and self.offsets_us[index - rank - 1] == self.offsets_us[index]:
            rank += 1
        return rank


class TimeView:
    """The visible trades' times as ``key`` gives them (ns, ms, ...): a sequence for bisect."""

    def __init__(self, market: Market, visible: int, key: Callable[[Trade], int]) -> None:
        self.market, self.visible, self.key = market, visible, key

    def __len__(self) -> int:
        return self.visible

    def __getitem__(self, index: int) -> int:
        return self.key(self.market.stream.trade(index, self.market.anchor_us))


class Market:
    """A product's stream placed on a clock: what exists now, and slices of it by id."""

    def __init__(self, spec: ProductSpec, seed: int, start_us: int) -> None:
        self.spec = spec
        self.seed = seed
        self.stream = TradeStream(spec, seed)
        self.stream.ensure(max(1, spec.history))
        # Anchor so that exactly ``history`` trades are in the past at start_us.
        last_offset = self.stream.offsets_us[spec.history - 1] if spec.history else -1
        self.anchor_us = start_us - last_offset

    def visible(self, now_us: int) -> int:
        """How many trades exist at ``now_us``."""
        offset = now_us - self.anchor_us
        self.stream.ensure_offset(offset)
        return bisect.bisect_right(self.stream.offsets_us, offset)

    def index_below(self, trade_id: int, count: int) -> int:
        """Index of the first trade with an id >= ``trade_id`` among the first ``count``."""
        return bisect.bisect_left(self.stream.ids, trade_id, 0, count)

    def trades(self, start: int, stop: int) -> list[Trade]:
        return [self.stream.trade(i, self.anchor_us) for i in range(start, stop)]

    def skipped_ids(self, count: int) -> list[int]:
        ids = self.stream.ids
        return [i for k in range(1, count) for i in range(ids[k - 1] + 1, ids[k])]

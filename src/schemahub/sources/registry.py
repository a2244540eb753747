"""Exchange name -> its ``ExchangeSpec``. Adding a venue adds one line here.

Specs (and so connectors) are imported lazily, so a broken or heavy connector never slows
down or breaks commands that do not use it.
"""

from __future__ import annotations

import importlib
from functools import cache

from schemahub.errors import UnknownExchange
from schemahub.identifiers import exchange_name
from schemahub.sources.base import TradeSource
from schemahub.sources.spec import ExchangeSpec

EXCHANGES: dict[str, str] = {
    "binance": "schemahub.sources.binance:SPEC",
    "bitfinex": "schemahub.sources.bitfinex:SPEC",
    "bybit": "schemahub.sources.bybit:SPEC",
    "coinbase": "schemahub.sources.coinbase:SPEC",
    "kraken": "schemahub.sources.kraken:SPEC",
    "okx": "schemahub.sources.okx:SPEC",
}


DEFAULT_EXCHANGE = "coinbase"
"""What ``--exchange`` means when it is not given (commands that take one exchange)."""


def list_exchanges() -> list[str]:
    return sorted(EXCHANGES)


@cache
def spec(name: str) -> ExchangeSpec:
    """The venue's spec; ``UnknownExchange`` names the valid choices."""
    if name not in EXCHANGES:
        exchange_name(name)  # a malformed name gets the identifier error, not "unknown"
        raise UnknownExchange(f"unknown exchange {name!r}; known: {', '.join(list_exchanges())}")
    module_name, _, attribute = EXCHANGES[name].partition(":")
    found = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(found, ExchangeSpec) or found.name != name:
        raise TypeError(f"{EXCHANGES[name]} is not the ExchangeSpec of {name!r}")
    return found


def source_class(name: str) -> type[TradeSource]:
    """The REST connector class of ``name``."""
    return spec(name).connector

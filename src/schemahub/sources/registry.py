"""Exchange name -> connector class. Adding an exchange adds one line here.

Connectors are imported lazily, so a broken or heavy connector never slows down or
breaks commands that do not use it.
"""

from __future__ import annotations

import importlib

from schemahub.errors import UnknownExchange
from schemahub.identifiers import exchange_name
from schemahub.sources.base import TradeSource

EXCHANGES: dict[str, str] = {
    "binance": "schemahub.sources.binance:Binance",
    "coinbase": "schemahub.sources.coinbase:Coinbase",
    "kraken": "schemahub.sources.kraken:Kraken",
}


def list_exchanges() -> list[str]:
    return sorted(EXCHANGES)


def source_class(name: str) -> type[TradeSource]:
    """The connector class for ``name``; ``UnknownExchange`` names the valid choices."""
    if name not in EXCHANGES:
        exchange_name(name)  # a malformed name gets the identifier error, not "unknown"
        raise UnknownExchange(f"unknown exchange {name!r}; known: {', '.join(list_exchanges())}")
    module_name, _, class_name = EXCHANGES[name].partition(":")
    cls: type[TradeSource] = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(cls, TradeSource) and cls.name == name
    return cls

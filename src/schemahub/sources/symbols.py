"""Symbol normalization: every exchange's products become ``BASE-QUOTE`` in upper case.

Always from the exchange's own metadata (Binance ``baseAsset``/``quoteAsset``, Kraken
``wsname``, Coinbase ``base_currency``/``quote_currency``), never by guessing where to
split ``BTCUSDT``. An exchange whose asset codes differ from the common ones for the
same asset (Kraken's ``XBT``) passes its own alias table: aliases are per venue, because
the same code can mean different assets on different venues.
"""

from __future__ import annotations

from collections.abc import Mapping

from schemahub.errors import InvalidIdentifier
from schemahub.identifiers import Symbol, symbol


def asset(code: str, aliases: Mapping[str, str] | None = None) -> str:
    upper = code.strip().upper()
    return (aliases or {}).get(upper, upper)


def normalize(base: str, quote: str, aliases: Mapping[str, str] | None = None) -> Symbol | None:
    """``BASE-QUOTE`` from two asset codes; None if the result is not a storable symbol."""
    try:
        return symbol(f"{asset(base, aliases)}-{asset(quote, aliases)}")
    except InvalidIdentifier:
        return None

"""Symbol normalization: every exchange's products become ``BASE-QUOTE`` in upper case.

Always from the exchange's own metadata (Binance ``baseAsset``/``quoteAsset``, Kraken
``wsname``, Coinbase ``base_currency``/``quote_currency``), never by guessing where to
split ``BTCUSDT``. Asset codes that differ between exchanges for the same asset go
through one documented alias table.
"""

from __future__ import annotations

from schemahub.errors import InvalidIdentifier
from schemahub.identifiers import Symbol, symbol

ASSET_ALIASES: dict[str, str] = {
    "XBT": "BTC",   # Kraken's ISO-4217-style code for bitcoin
    "XDG": "DOGE",  # Kraken's code for dogecoin
}
"""Exchange asset code -> the code used in normalized symbols (documented in the README)."""


def asset(code: str) -> str:
    upper = code.strip().upper()
    return ASSET_ALIASES.get(upper, upper)


def normalize(base: str, quote: str) -> Symbol | None:
    """``BASE-QUOTE`` from two asset codes; None if the result is not a storable symbol."""
    try:
        return symbol(f"{asset(base)}-{asset(quote)}")
    except InvalidIdentifier:
        return None

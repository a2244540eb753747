"""Strict validation of every identifier that becomes part of a path or storage key.

Nothing from the command line or the network reaches a path unless it passed one of
these functions first: product ids such as ``../../etc`` or ``BTC/USD`` are rejected
here, not sanitized later.
"""

from __future__ import annotations

import re
from typing import NewType

from schemahub.errors import InvalidIdentifier

Symbol = NewType("Symbol", str)
"""A normalized product id, ``BASE-QUOTE`` in upper case (``BTC-USD``)."""

_SYMBOL = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{1,20}")
_EXCHANGE = re.compile(r"[a-z][a-z0-9]{1,31}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def symbol(value: str) -> Symbol:
    """Validate a normalized product id (``BTC-USD``); raise ``InvalidIdentifier`` otherwise."""
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value):
        raise InvalidIdentifier(
            f"invalid product id {value!r}: expected BASE-QUOTE in upper case letters and digits, "
            "e.g. BTC-USD"
        )
    return Symbol(value)


def exchange_name(value: str) -> str:
    """Validate an exchange name (lower case letters and digits)."""
    if not isinstance(value, str) or not _EXCHANGE.fullmatch(value):
        raise InvalidIdentifier(
            f"invalid exchange name {value!r}: expected lower case letters and digits, e.g. coinbase"
        )
    return value


def lock_name_part(value: str) -> str:
    """Validate a free-form name (job name, owner id) that becomes part of a key."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidIdentifier(
            f"invalid name {value!r}: use letters, digits and . _ : - (at most 128 characters)"
        )
    return value

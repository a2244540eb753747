"""Which products to ingest: the seed file written by ``update-seed``, or ``--products``.

The seed lives in the lake (``state/seeds/<exchange>.json``) so every host and every
scheduled task of a deployment reads the same list.
"""

from __future__ import annotations

import difflib
import re
from datetime import UTC, datetime

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from schemahub.errors import ConfigError, CorruptState
from schemahub.identifiers import exchange_name
from schemahub.identifiers import symbol as valid_symbol
from schemahub.infra.storage import Storage
from schemahub.sources.base import Product


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeedProduct(_Model):
    symbol: str
    native_id: str


class Seed(_Model):
    format: str = "schemahub.seed/v1"
    exchange: str
    updated_at: datetime
    source_url: str
    filter: str | None
    products: list[SeedProduct]


def seed_key(exchange: str) -> str:
    return f"state/seeds/{exchange_name(exchange)}.json"


def load_seed(storage: Storage, exchange: str) -> Seed | None:
    key = seed_key(exchange)
    data = storage.read(key)
    if data is None:
        return None
    try:
        seed = Seed.model_validate(orjson.loads(data))
        for item in seed.products:
            valid_symbol(item.symbol)
    except (orjson.JSONDecodeError, ValidationError, ConfigError) as exc:
        where = storage.url_for(key)
        raise CorruptState(f"seed file {where} is invalid ({str(exc).splitlines()[0]}); "
                           f"re-create it with `schemahub update-seed --exchange {exchange}`",
                           path=where) from exc
    return seed


def compile_filter(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--filter {pattern!r} is not a valid regular expression: {exc}") from None


def select_for_seed(products: list[Product], pattern: str | None) -> list[Product]:
    """Tradable products whose symbol matches ``pattern`` (a regex searched in the symbol)."""
    regex = compile_filter(pattern)
    chosen = [p for p in products if p.tradable and (regex is None or regex.search(p.symbol))]
    return sorted(chosen, key=lambda p: p.symbol)


def save_seed(storage: Storage, exchange: str, products: list[Product], source_url: str,
              pattern: str | None) -> Seed:
    seed = Seed(exchange=exchange, updated_at=datetime.now(UTC), source_url=source_url, filter=pattern,
                products=[SeedProduct(symbol=p.symbol, native_id=p.native_id) for p in products])
    storage.write(seed_key(exchange), orjson.dumps(seed.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    return seed


def pick(requested: list[str], available: list[Product]) -> list[Product]:
    """The requested products (symbols or native ids) this exchange lists; others ignored."""
    chosen = []
    for product in available:
        names = {product.symbol, product.native_id.upper()}
        if any(name.strip().upper() in names for name in requested) and product not in chosen:
            chosen.append(product)
    return chosen


def resolve(requested: list[str], available: list[Product], exchange: str) -> list[Product]:
    """Map ``--products`` (normalized symbols or native ids) to the exchange's products."""
    by_name: dict[str, Product] = {}
    for product in available:
        by_name[product.symbol] = product
        by_name.setdefault(product.native_id.upper(), product)
    chosen: list[Product] = []
    for name in requested:
        found = by_name.get(name.strip().upper())
        if found is None:
            valid_symbol(name.strip().upper())  # malformed ids get the identifier error
            close = difflib.get_close_matches(name.upper(), list(by_name), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{exchange} has no product {name!r}{hint}")
        if found not in chosen:
            chosen.append(found)
    return chosen


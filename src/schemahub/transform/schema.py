"""The unified trades table: one source of truth for its columns, types and meaning.

Every exchange's mapping produces exactly these columns; the table, the query views,
the docs (``docs/SCHEMA.md`` is checked against this module by a test) and the quality
checks all read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

UTC_MICROS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    sql_type: str
    description: str


COLUMNS: tuple[Column, ...] = (
    Column("exchange", pa.string(), "STRING",
           "Source exchange, lower case (`coinbase`). Part of the primary key and a partition column."),
    Column("symbol", pa.string(), "STRING",
           "Product as `BASE-QUOTE` in upper case (`BTC-USD`), normalized from the exchange's own "
           "metadata. Part of the primary key."),
    Column("trade_id", pa.string(), "STRING",
           "The exchange's trade id as text (exchanges disagree on its type). Unique per "
           "(exchange, symbol). Part of the primary key."),
    Column("id_kind", pa.string(), "STRING",
           "What `trade_id` is: `trade` (the exchange's trade id), `aggregate` (a Binance aggregate "
           "id: one taker order's fills at one price, summed) or `derived` (Kraken rows that came "
           "without an id: page cursor and position)."),
    Column("side", pa.string(), "STRING",
           "TAKER (aggressor) side, `buy` or `sell`. Coinbase REST reports the maker side; the "
           "mapping inverts it."),
    Column("price", pa.float64(), "DOUBLE", "Execution price in the quote currency."),
    Column("quantity", pa.float64(), "DOUBLE", "Executed size in the base currency."),
    Column("trade_ts", UTC_MICROS, "TIMESTAMP (UTC, µs)",
           "When the trade executed, UTC, microsecond precision."),
    Column("ingest_ts", UTC_MICROS, "TIMESTAMP (UTC, µs)",
           "When SchemaHub fetched the trade: the raw file's `fetched_at`, so a rebuild reproduces it."),
    Column("trade_date", pa.date32(), "DATE",
           "UTC day of `trade_ts`; an explicit partition column (Delta has no hidden partitioning)."),
)

PRIMARY_KEY = ("exchange", "symbol", "trade_id")
PARTITION_BY = ["exchange", "trade_date"]
MAPPED = tuple(c.name for c in COLUMNS if c.name != "trade_date")
"""Columns a mapping must produce (``trade_date`` is derived from ``trade_ts``)."""

SCHEMA = pa.schema([pa.field(c.name, c.type, nullable=False) for c in COLUMNS])


def markdown_table() -> str:
    """The column reference as a Markdown table (docs/SCHEMA.md embeds it)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.sql_type} | {c.description} |" for c in COLUMNS]
    return "\n".join(lines)

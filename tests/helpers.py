"""Test helpers: run ingest against a simulator, read the raw lake back, compare with ground truth."""

from __future__ import annotations

import bisect
import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from schemahub import pipeline
from schemahub.infra.checkpoints import Checkpoint, GapLog
from schemahub.ingest.exchanges import IngestRequest
from schemahub.ingest.report import IngestReport
from schemahub.ingest.run import IngestOptions, SourceMode
from schemahub.raw import files
from schemahub.raw.layout import parse_key, product_prefix
from schemahub.settings import Settings
from schemahub.simulator.catalog import simulator_class
from schemahub.simulator.market import ProductSpec
from schemahub.simulator.server import Simulator
from schemahub.sources.registry import list_exchanges, source_class
from tests.lakes import LakeLike, LakeRef, as_lake

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_FIXTURES = Path(__file__).parents[2] / "shared" / "fixtures"

SIM_START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp()
EPOCH_2020_US = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)

PRODUCTS_FOR: dict[str, tuple[ProductSpec, ...]] = {
    name: simulator_class(name).test_products for name in list_exchanges()}
TRADED: dict[str, list[str]] = {name: list(simulator_class(name).traded) for name in list_exchanges()}
"""Products with real trade ids that the generic tests ingest, per exchange (from each simulator)."""
TEST_PRODUCTS = PRODUCTS_FOR["coinbase"]

# Short timeouts and backoffs: a test of failure paths should take seconds, not minutes.
FAST_ENV = {
    "SCHEMAHUB_RETRY_BASE": "0.02",
    "SCHEMAHUB_RETRY_CAP": "0.2",
    "SCHEMAHUB_BREAKER_COOLDOWN": "0.1",
    "SCHEMAHUB_HTTP_READ_TIMEOUT": "2",
    "SCHEMAHUB_HTTP_CONNECT_TIMEOUT": "1",
    "SCHEMAHUB_LOCK_TTL": "5",
    "SCHEMAHUB_RATE_LIMIT_PAUSE": "0.1",
}


def sim_env(sim: Simulator) -> dict[str, str]:
    """Point SchemaHub at a simulator: its API, and its archive host where it has one."""
    env = {f"SCHEMAHUB_{sim.exchange.upper()}_URL": sim.url}
    if sim.api.archive is not None:
        env[f"SCHEMAHUB_{sim.exchange.upper()}_ARCHIVE_URL"] = sim.url
    return env


def settings(lake: LakeLike, sim: Simulator | None, **env: str) -> Settings:
    where = as_lake(lake)
    target = sim_env(sim) if sim is not None else {"SCHEMAHUB_COINBASE_URL": "http://127.0.0.1:9"}
    return Settings.load(where.url, env={**FAST_ENV, **where.env, **target, **env})


def ingest(lake: LakeLike, sim: Simulator, products: Sequence[str] | None, *, since_us: int = EPOCH_2020_US,
           rate: float = 1000.0, burst: int = 50, workers: int = 3, chunks: int = 4, dry_run: bool = False,
           source: SourceMode = "rest", **env: str) -> IngestReport:
    """Ingest one simulated exchange through the pipeline (``rate``: trade-page requests/s).

    REST unless ``source`` says otherwise: the archive tests choose it explicitly."""
    options = IngestOptions(since_us=since_us, workers=workers, chunk_concurrency=chunks,
                            commit_interval_s=0.05, source=source)
    request = IngestRequest([sim.exchange], list(products) if products else None, lambda _: options,
                            dry_run=dry_run, rate=rate, burst=burst)
    reports = pipeline.ingest(settings(lake, sim, **env), request)
    assert len(reports) == 1
    return reports[0]


def cli_env(sim: Simulator | Sequence[Simulator] | None, lake: LakeRef | None = None,
            **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess pointed at one simulator or several (and a lake)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEMAHUB_", "AWS_"))}
    env.update(FAST_ENV)
    if lake is not None:
        env.update(lake.env)
    env["SCHEMAHUB_COINBASE_URL"] = "http://127.0.0.1:9"
    sims = [] if sim is None else [sim] if isinstance(sim, Simulator) else list(sim)
    for one in sims:
        env.update(sim_env(one))
    env.update(extra)
    return env


def cli_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "schemahub", "--log-format", "json", *args]


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_args(*args), env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


# -- recordings ------------------------------------------------------------------------


def recording(relative: str) -> Any:
    """A recorded exchange response: MIT-sourced ones are copied into tests/fixtures/;
    LGPL-sourced ones are read from ../shared/fixtures/, and the test skips without it."""
    local = FIXTURES / relative
    if local.exists():
        return orjson.loads(local.read_bytes())
    shared = SHARED_FIXTURES / relative
    if not shared.exists():
        import pytest

        pytest.skip(f"recording {relative} is read from ../shared/fixtures, which is absent here")
    return orjson.loads(shared.read_bytes())


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "array", str: "string", type(None): "null"}[type(value)]


def assert_shaped_like(got: Any, recorded: Any, where: str = "$", *, same_keys: bool = True) -> None:
    """``got`` (what the simulator serves) has the recorded JSON's shape: the same types all
    the way down; objects with the same keys in the same order (``same_keys``) or a subset of
    them; array items compared position by position with the recorded ones (rows such as
    Kraken's are tuples), the last recorded item standing for any further ones."""
    assert json_type(got) == json_type(recorded), f"{where}: {json_type(got)}, recorded {json_type(recorded)}"
    if isinstance(got, dict):
        if same_keys:
            assert list(got) == list(recorded), f"{where}: keys {list(got)}, recorded {list(recorded)}"
        else:
            extra = [k for k in got if k not in recorded]
            assert not extra, f"{where}: keys {extra} are not in the recording"
        for key, value in got.items():
            assert_shaped_like(value, recorded[key], f"{where}.{key}", same_keys=same_keys)
    elif isinstance(got, list) and recorded:
        for index, item in enumerate(got):
            assert_shaped_like(item, recorded[min(index, len(recorded) - 1)], f"{where}[{index}]",
                               same_keys=same_keys)


# -- reading the lake back -------------------------------------------------------------


def raw_files(lake: LakeLike, symbol: str, exchange: str = "coinbase") -> list[tuple[str, files.RawHeader,
                                                                                    list[dict[str, Any]]]]:
    """Every raw file of a product with its trades; a bulk-archive coverage record's trades are
    its zip's rows in the committed ids, in the REST API's JSON form (so both compare alike)."""
    storage = as_lake(lake).storage()
    out = []
    for info in storage.list(product_prefix(exchange, symbol)):
        if "/archives/" in info.key:
            continue  # verbatim archive zips: read through their coverage records
        parsed = parse_key(info.key)
        assert parsed is not None, f"unexpected object in the raw layer: {info.key}"
        data = storage.read(info.key)
        assert data is not None
        if parsed.archive:
            header = files.read_header(data, info.key)
            out.append((info.key, header, archive_records(storage, header)))
            continue
        header, records = files.decode(data, info.key)
        out.append((info.key, header, list(records)))
    return out


def archive_records(storage: Any, header: files.RawHeader) -> list[dict[str, Any]]:
    """A coverage record's rows, from the zip in the lake, as the venue's REST API writes them
    (Binance: times in µs, like the ground truth SchemaHub is served)."""
    archive = header.archive
    assert archive is not None
    cache_key = (archive.key, archive.sha256, header.exchange, header.time_unit)
    if cache_key not in _ARCHIVES:
        data = storage.read(archive.key)
        assert data is not None, f"{archive.key} is missing"
        assert hashlib.sha256(data).hexdigest() == archive.sha256, f"{archive.key} is not the verified file"
        parsed = _parse_archive(data, header)
        _ARCHIVES[cache_key] = (parsed, [trade_id(r) for r in parsed])
    parsed, ids = _ARCHIVES[cache_key]
    return parsed[bisect.bisect_right(ids, header.covers_after_id):
                  bisect.bisect_right(ids, header.covers_through_id)]


_ARCHIVES: dict[tuple[str, str, str, str | None], tuple[list[dict[str, Any]], list[int]]] = {}
"""Parsed archive files, by (key, sha256, exchange, time unit): several coverage records
share one file, and parsing it once per record made the archive tests slow."""


def _parse_archive(data: bytes, header: files.RawHeader) -> list[dict[str, Any]]:
    import io
    import zipfile

    archive = header.archive
    assert archive is not None
    if archive.filename.endswith(".gz"):
        import gzip

        text = gzip.decompress(data).decode()
    else:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            text = zf.read(zf.namelist()[0]).decode()
    scale = 1 if header.time_unit == "us" else 1000
    lines = text.splitlines()
    names = lines[0].split(",")
    records = []
    for line in lines[1 if archive.header_row else 0:]:
        if not line:
            continue
        cells = line.split(",")
        record: dict[str, Any]
        if archive.named_columns:  # Bybit: by the header's names; ids numbered from the day's base
            row = dict(zip(names, cells, strict=True))
            record = {"id": archive.id_base + int(row["id"]), "timestamp": int(row["timestamp"]),
                      "price": row["price"], "volume": row["volume"], "side": row["side"]}
        elif header.exchange == "okx":  # instrument_name,trade_id,side,price,size,created_time
            size = str(Decimal(cells[4]).quantize(Decimal("1e-8")))  # 1.23e-05 -> REST's 0.00001230
            record = {"instId": cells[0], "side": cells[2], "sz": size, "px": cells[3], "tradeId": cells[1],
                      "ts": cells[5]}
        elif archive.dataset == "trades":
            record = {
                "id": int(cells[0]), "price": cells[1], "qty": cells[2], "quoteQty": cells[3],
                "time": int(cells[4]) * scale, "isBuyerMaker": cells[5].lower() == "true",
                "isBestMatch": cells[6].lower() == "true"}
        else:
            record = {"a": int(cells[0]), "p": cells[1], "q": cells[2], "f": int(cells[3]),
                      "l": int(cells[4]), "T": int(cells[5]) * scale, "m": cells[6].lower() == "true",
                      "M": cells[7].lower() == "true"}
        records.append(record)
    return sorted(records, key=trade_id)


def lake_keys(lake: LakeLike, prefix: str = "") -> list[str]:
    """Every object in the lake under ``prefix`` (leases included for a local lake)."""
    return [info.key for info in as_lake(lake).storage().list(prefix)]


def held_leases(lake: LakeLike, owners: bool = False) -> Any:
    """The leases someone holds right now (released ones excluded): names, or (name, owner)."""
    lakeref = as_lake(lake)
    if lakeref.kind == "local" and not Path(lakeref.url).exists():
        return [] if owners else set()
    backend = pipeline.open_backends(Settings.load(lakeref.url, env={**os.environ, **lakeref.env}),
                                     create=False).locks
    held = [(record.name, record.owner) for record in backend.list() if not record.released]
    return held if owners else {name for name, _ in held}


def raw_records(lake: LakeLike, symbol: str, exchange: str = "coinbase") -> list[dict[str, Any]]:
    """Every raw trade line of a product, in file order."""
    return [record for _, _, records in raw_files(lake, symbol, exchange) for record in records]


def checkpoint(lake: LakeLike, symbol: str, exchange: str = "coinbase") -> Checkpoint:
    data = as_lake(lake).storage().read(f"state/checkpoints/{exchange}/{symbol}.json")
    assert data is not None, f"no checkpoint for {exchange} {symbol}"
    return Checkpoint.model_validate(orjson.loads(data))


def gap_ranges(lake: LakeLike, symbol: str, exchange: str = "coinbase") -> list[tuple[int, int]]:
    data = as_lake(lake).storage().read(f"state/gaps/{exchange}/{symbol}.json")
    if data is None:
        return []
    log = GapLog.model_validate(orjson.loads(data))
    return [(g.first_id, g.last_id) for g in log.gaps]


def trade_id(record: Any) -> int:
    """The id of a raw record or a ground-truth wire trade, on any exchange."""
    if isinstance(record, list):  # a wire row: Bitfinex [ID, MTS, AMOUNT, PRICE], Kraken [..., id]
        return int(record[0] if len(record) == 4 else record[6])
    for key in ("trade_id", "id", "a", "tradeId"):
        if key in record:
            return int(record[key])
    raise KeyError(f"no trade id in {record}")


def payload(record: dict[str, Any]) -> Any:
    """What of a raw line the exchange sent (Kraken lines wrap the verbatim row)."""
    return record["trade"] if "trade" in record and "id_kind" in record else record


def truth_range(sim: Simulator, symbol: str, after_id: int, through_id: int) -> list[dict[str, Any]]:
    return [t for t in sim.ground_truth(symbol) if after_id < trade_id(t) <= through_id]


def skipped_ids(sim: Simulator, symbol: str, after_id: int, through_id: int) -> list[int]:
    """Ids the exchange skipped in the window (none where ids are no per-product sequence)."""
    if not source_class(sim.exchange).dense_ids:
        return []
    market = sim.market(symbol)
    count = market.visible(sim.now_us())
    return [i for i in market.skipped_ids(count) if after_id < i <= through_id]


def expand(ranges: list[tuple[int, int]]) -> list[int]:
    return [i for a, b in ranges for i in range(a, b + 1)]


def assert_lake_matches_truth(lake: LakeLike, sim: Simulator, symbol: str,
                              committed_only: bool = False) -> Checkpoint:
    """Raw lines == ground truth, verbatim, trade by trade; gaps == the simulator's skipped ids.

    ``committed_only``: leave out raw files above the watermark (a stopped or killed run may
    have written them without committing them; the next run adopts or deletes them)."""
    exchange = sim.exchange
    cp = checkpoint(lake, symbol, exchange)
    records = [r for key, _, records in raw_files(lake, symbol, exchange) for r in records
               if not committed_only or parse_key(key).last_id <= cp.last_trade_id]  # type: ignore[union-attr]
    ids = [trade_id(r) for r in records]
    assert len(ids) == len(set(ids)), f"{symbol}: duplicate trade ids in the raw layer"
    got = [payload(r) for r in sorted(records, key=trade_id)]
    want = truth_range(sim, symbol, cp.start_after_id, cp.last_trade_id)
    assert len(got) == len(want), f"{symbol}: {len(got)} raw trades, ground truth has {len(want)}"
    for mine, theirs in zip(got, want, strict=True):
        # Verbatim: same keys in the same order, same values, same JSON types.
        assert orjson.dumps(mine) == orjson.dumps(theirs), f"{symbol}: raw {mine} != truth {theirs}"
    assert expand(gap_ranges(lake, symbol, exchange)) == skipped_ids(sim, symbol, cp.start_after_id,
                                                                      cp.last_trade_id)
    return cp


class FakeClock:
    """A monotonic clock for unit tests; ``sleep`` moves it instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- the unified table ----------------------------------------------------------------------


def transform(lake: LakeLike, **options: Any) -> Any:
    from schemahub.transform.report import TransformOptions

    return pipeline.transform(settings(lake, None), TransformOptions(**options))


def lake_settings(lake: LakeLike, **env: str) -> Settings:
    """Settings for a lake alone (no exchange)."""
    return settings(lake, None, **env)


def delta_table(lake: LakeLike) -> Any:
    """The unified table, opened with delta-rs directly (not through SchemaHub)."""
    from deltalake import DeltaTable

    from schemahub.table.delta import TradesTable

    table = TradesTable.of(as_lake(lake).storage())
    return DeltaTable(table.uri, storage_options=table.storage_options)


def table_rows(lake: LakeLike, version: int | None = None,
               exchange: str | None = None) -> list[dict[str, Any]]:
    """Every row of the unified table, sorted by its primary key."""
    delta = delta_table(lake)
    if version is not None:
        delta.load_as_version(version)
    rows = [r for r in delta.to_pyarrow_table().to_pylist() if exchange is None or r["exchange"] == exchange]
    return sorted(rows, key=lambda r: (r["exchange"], r["symbol"], int(r["trade_id"])))


def expected_rows(lake: LakeLike, sim: Simulator, symbols: Sequence[str]) -> list[dict[str, Any]]:
    """The table as it must be: the simulator's trades in unified form, with the taker side,
    exact microsecond times, and ingest_ts from the raw file each trade was fetched in."""
    from schemahub.timeutil import from_us

    exchange = sim.exchange
    rows = []
    for symbol in sorted(symbols):
        fetched: dict[int, datetime] = {}
        for _, header, records in raw_files(lake, symbol, exchange):
            for record in records:  # a trade in two raw files keeps its first fetch time
                seen = fetched.get(trade_id(record), header.fetched_at)
                fetched[trade_id(record)] = min(header.fetched_at, seen)
        window = checkpoint(lake, symbol, exchange)
        market = sim.market(symbol)
        for trade in market.trades(0, market.visible(sim.now_us())):
            if not window.start_after_id < trade.trade_id <= window.last_trade_id:
                continue
            assert trade.trade_id in fetched, f"{symbol} {trade.trade_id} is in no raw file"
            moment = from_us(trade.time_us)
            rows.append({
                "exchange": exchange, "symbol": symbol, "trade_id": str(trade.trade_id),
                "id_kind": "derived" if market.spec.daily_ids else "trade",
                "side": trade.taker_side, "price": float(trade.price), "quantity": float(trade.size),
                "trade_ts": moment, "ingest_ts": fetched[trade.trade_id], "trade_date": moment.date(),
            })
    return rows


def assert_table_matches_truth(lake: LakeLike, sim: Simulator,
                               symbols: Sequence[str]) -> list[dict[str, Any]]:
    """Row by row, every column: taker side, µs timestamps, exact ids; no loss, no duplicate."""
    got = table_rows(lake, exchange=sim.exchange)
    keys = [(r["exchange"], r["symbol"], r["trade_id"]) for r in got]
    assert len(keys) == len(set(keys)), "duplicate primary keys in the table"
    want = expected_rows(lake, sim, symbols)
    assert len(got) == len(want), f"table has {len(got)} rows, ground truth {len(want)}"
    for mine, theirs in zip(got, want, strict=True):
        assert mine == theirs, f"table {mine} != truth {theirs}"
    return got

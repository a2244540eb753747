"""Lake infrastructure: storage semantics, raw file format and layout, checkpoints, leases."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from schemahub.errors import CorruptState, InvalidIdentifier, LockHeld, StorageError
from schemahub.identifiers import exchange_name, symbol
from schemahub.infra import processes
from schemahub.infra.checkpoints import Checkpoint, CheckpointStore, GapLogStore
from schemahub.infra.locks import LocalLocks, new_owner_id
from schemahub.infra.storage import LocalStorage, check_key
from schemahub.raw import files
from schemahub.raw.layout import RawKey, parse_key, product_prefix
from schemahub.sources.base import RawTrade

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)

# -- identifiers ----------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["BTC-USD", "BTC-USDT", "1INCH-EUR", "A-B"])
def test_valid_symbols(good: str) -> None:
    assert symbol(good) == good


@pytest.mark.parametrize("bad", ["btc-usd", "BTC_USD", "BTC", "BTC-USD-X", "../x", "BTC-", "",
                                 "B" * 21 + "-X"])
def test_invalid_symbols(bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        symbol(bad)


def test_exchange_names() -> None:
    assert exchange_name("coinbase") == "coinbase"
    for bad in ("Coinbase", "coin base", "../c", "c"):
        with pytest.raises(InvalidIdentifier):
            exchange_name(bad)


# -- storage -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/../b", "a/.hidden", "a/b c", ""])
def test_keys_cannot_escape_the_lake(key: str) -> None:
    with pytest.raises(StorageError):
        check_key(key)


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def test_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write("a.json", b"x")
    me = processes.me()
    dead = replace(me, pid=_dead_pid(), start_ticks=1)
    elsewhere = replace(dead, pid_ns="4026531999")  # another PID namespace: we cannot see its pids
    orphan = tmp_path / ".tmp" / f"{dead}~abc.tmp"
    foreign = tmp_path / ".tmp" / f"{elsewhere}~xyz.tmp"
    mine = tmp_path / ".tmp" / f"{me}~def.tmp"
    for path in (orphan, foreign, mine):
        path.write_bytes(b"half")
    assert storage.remove_orphaned_temp_files() == 1
    assert not orphan.exists() and foreign.exists() and mine.exists()


def test_a_lease_is_taken_over_only_from_a_provably_dead_owner(tmp_path: Path) -> None:
    """Containers sharing a hostname but not a PID namespace (host networking) see each
    other's pids as absent: only an owner in our own namespace and boot can be proven dead,
    and a pid that was reused by a newer process does not keep a dead owner alive."""
    locks = LocalLocks(tmp_path)
    me = processes.me()
    dead_here = replace(me, pid=_dead_pid(), start_ticks=1)
    live_elsewhere = replace(dead_here, pid_ns="4026531999")
    other_boot = replace(dead_here, boot_id="0123456789abcdef")
    reused = replace(me, pid=os.getppid(), start_ticks=1)  # a live pid that started at another time
    alive = processes.Identity(me.host, me.boot_id, me.pid_ns, os.getppid(),
                               processes._start_ticks(os.getppid()) or 0)
    cases = {"dead-here": (dead_here, True), "other-namespace": (live_elsewhere, False),
             "other-boot": (other_boot, False), "reused-pid": (reused, True), "alive": (alive, False)}
    for name, (owner, takeable) in cases.items():
        locks.acquire(f"ingest/x/{name}", f"{owner}:abcd1234", ttl=300)
        if takeable:
            assert locks.acquire(f"ingest/x/{name}", new_owner_id(), ttl=30).token == 2, name
        else:
            with pytest.raises(LockHeld):
                locks.acquire(f"ingest/x/{name}", new_owner_id(), ttl=30)


# -- raw files -----------------------------------------------------------------------------


def _header(**over: object) -> files.RawHeader:
    fields: dict[str, object] = dict(
        exchange="coinbase", symbol="BTC-USD", native_id="BTC-USD", covers_after_id=1000,
        covers_through_id=2000, first_trade_id=1001, last_trade_id=1002, trade_count=2,
        first_trade_time=NOW, last_trade_time=NOW, missing_ids=[(1003, 2000)], fetched_at=NOW,
        requests=[], writer=files.WriterMeta(run_id="r", owner="o", lease_token=1))
    fields.update(over)
    return files.RawHeader.model_validate(fields)


def test_raw_round_trip_keeps_records_verbatim_and_bytes_deterministic() -> None:
    trades = [RawTrade(1001, {"trade_id": "1001", "side": "sell", "price": "1.10", "time": "t"}),
              RawTrade(1002, {"trade_id": 1002, "side": "buy", "price": "1.20", "time": "t"})]
    data = files.encode(_header(), trades)
    assert data == files.encode(_header(), trades)  # gzip mtime=0: content decides the bytes
    header, records = files.decode(data, "x")
    assert header == _header()
    assert list(records) == [t.record for t in trades]
    assert files.read_header(data, "x") == header


@pytest.mark.parametrize(("data", "message"), [
    (b"not gzip", "not valid gzip"),
    (__import__("gzip").compress(b'{"no header": 1}\n', mtime=0), "no valid header"),
], ids=["not-gzip", "no-header"])
def test_corrupt_raw_files_name_themselves(data: bytes, message: str) -> None:
    with pytest.raises(CorruptState, match=message) as info:
        files.decode(data, "raw/x.jsonl.gz")
    assert info.value.path == "raw/x.jsonl.gz"


def test_raw_keys_are_a_function_of_content_and_parse_back() -> None:
    key = RawKey("coinbase", symbol("BTC-USD"), date(2026, 11, 20), 1001, 1999)
    text = key.key
    assert text == ("raw/exchange=coinbase/symbol=BTC-USD/date=2026-11-20/"
                    "coinbase-BTC-USD-00000000000000001001-00000000000000001999.jsonl.gz")
    assert parse_key(text) == key
    assert parse_key(text.replace("BTC-USD-0", "ETH-USD-0")) is None  # name must match its folder
    assert parse_key("raw/exchange=coinbase/symbol=BTC-USD/other.json") is None
    with pytest.raises(InvalidIdentifier):
        product_prefix("coinbase", "../../etc")


# -- checkpoints and gap log -----------------------------------------------------------------


def _checkpoint(last: int) -> Checkpoint:
    return Checkpoint(exchange="coinbase", symbol="BTC-USD", start_after_id=0, last_trade_id=last,
                      last_trade_time=NOW, updated_at=NOW, run_id="r", lease_token=1)


def test_corrupt_checkpoint_says_which_file_and_how_to_recover(tmp_path: Path) -> None:
    path = tmp_path / "state/checkpoints/coinbase/BTC-USD.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"exchange": "coinbase"}')
    with pytest.raises(CorruptState) as info:
        CheckpointStore(LocalStorage(tmp_path)).load("coinbase", "BTC-USD")
    assert str(path) in str(info.value) and "checkpoints rebuild" in str(info.value)


def test_gap_log_is_idempotent(tmp_path: Path) -> None:
    store = GapLogStore(LocalStorage(tmp_path))
    store.add("coinbase", "BTC-USD", [(5, 6)], run_id="a", detected_at=NOW)
    store.add("coinbase", "BTC-USD", [(5, 6), (9, 9)], run_id="b", detected_at=NOW)
    log = store.load("coinbase", "BTC-USD")
    assert log is not None
    assert [(g.first_id, g.last_id, g.run_id) for g in log.value.gaps] == [(5, 6, "a"), (9, 9, "b")]


# -- leases --------------------------------------------------------------------------------


def test_lock_names_are_validated(tmp_path: Path) -> None:
    with pytest.raises(InvalidIdentifier):
        LocalLocks(tmp_path).acquire("ingest/../../etc", "o", ttl=1)


@pytest.mark.parametrize("records", [
    [{"trade_id": 1, "price": "1.5"}, {"trade_id": "2", "price": "2.5"}],
    [{"a": "},{"}, {"b": 1}],  # a separator inside a string value
    [{"a": [{"x": 1}, {"y": 2}]}, {"b": {"c": "}"}}],  # nested objects and lists
    [{"only": "one"}],
    [{}, {}, {"e": None}],
    [{"u": 'caf\u00e9 "quoted" \\ back \n'}],
])
def test_json_lines_match_one_dump_per_record(records: list[dict[str, object]]) -> None:
    import orjson

    assert files.json_lines(records) == [orjson.dumps(r) for r in records]

"""The storage and lock contracts, on every backend: local folder / S3, lease files / DynamoDB.

The S3 and DynamoDB backends run against a real moto server over HTTP, so conditional
puts (If-Match / If-None-Match) and DynamoDB condition expressions are the real protocol.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemahub.errors import CommitConflict, InvalidIdentifier, LockHeld, LockLost
from schemahub.infra import processes
from schemahub.infra.aws import Aws
from schemahub.infra.checkpoints import Checkpoint, CheckpointStore
from schemahub.infra.dynamo_locks import DynamoLocks
from schemahub.infra.locks import LeaseKeeper, LocalLocks, LockBackend
from schemahub.infra.storage import LocalStorage, Storage
from tests.helpers import FakeClock
from tests.lakes import aws_env, create_lock_table, new_s3_lake

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
LockFactory = Callable[[FakeClock | None], LockBackend]


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path)
    return new_s3_lake(request.getfixturevalue("moto_url")).storage()


@pytest.fixture(params=["local", "dynamodb"])
def locks(request: pytest.FixtureRequest, tmp_path: Path) -> LockFactory:
    """A factory: every backend it makes shares one store (as processes share a lake)."""
    if request.param == "local":
        return lambda clock: LocalLocks(tmp_path, clock=clock or __import__("time").time)
    endpoint = request.getfixturevalue("moto_url")
    table = f"locks-{uuid.uuid4().hex[:10]}"
    create_lock_table(endpoint, table)
    aws = Aws.from_env(aws_env(endpoint))
    return lambda clock: DynamoLocks(table, aws, "s3://lake/x/state", clock=clock or __import__("time").time)


# -- storage --------------------------------------------------------------------------------


def test_create_is_create_only(storage: Storage) -> None:
    assert storage.create("a/b.json", b"first")
    assert not storage.create("a/b.json", b"second")
    assert storage.read("a/b.json") == b"first"
    assert storage.read("a/missing.json") is None and storage.read_versioned("a/missing.json") is None


def test_replace_if_is_compare_and_swap(storage: Storage) -> None:
    v1 = storage.replace_if("k.json", b"1", None)
    with pytest.raises(CommitConflict, match="changed under us"):
        storage.replace_if("k.json", b"x", None)  # expected it not to exist
    v2 = storage.replace_if("k.json", b"2", v1)
    with pytest.raises(CommitConflict):
        storage.replace_if("k.json", b"3", v1)  # stale version
    with pytest.raises(CommitConflict):
        storage.replace_if("gone.json", b"3", v1)  # expected a version of a key that does not exist
    found = storage.read_versioned("k.json")
    assert found is not None and (found.data, found.version) == (b"2", v2)
    storage.write("k.json", b"same")
    storage.write("k.json", b"same")
    assert storage.read("k.json") == b"same"


def test_concurrent_compare_and_swap_has_exactly_one_winner(storage: Storage) -> None:
    # (S3 versions are content hashes: every writer writes bytes different from the base's)
    base = storage.replace_if("k.json", b"base", None)
    outcomes: list[str] = []

    def writer(n: int) -> None:
        try:
            storage.replace_if("k.json", str(n).encode(), base)
            outcomes.append(f"won:{n}")
        except CommitConflict:
            outcomes.append("lost")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("lost") == 15
    assert storage.read("k.json") == winners[0].removeprefix("won:").encode()  # the winner's bytes


def test_list_is_sorted_recursive_and_honours_start_after(storage: Storage) -> None:
    for key in ("p/d=1/a", "p/d=1/b", "p/d=2/a", "p/d=3/c", "q/x"):
        storage.write(key, b"xy")
    assert [i.key for i in storage.list("p/")] == ["p/d=1/a", "p/d=1/b", "p/d=2/a", "p/d=3/c"]
    assert [i.size for i in storage.list("p/")] == [2, 2, 2, 2]
    assert [i.key for i in storage.list("p/", start_after="p/d=2")] == ["p/d=2/a", "p/d=3/c"]
    assert [i.key for i in storage.list("p/d=1/", start_after="p/d=1/a")] == ["p/d=1/b"]
    assert list(storage.list("missing/")) == []
    storage.delete("p/d=1/a")
    storage.delete("p/d=1/a")  # deleting what is gone is not an error
    assert [i.key for i in storage.list("p/d=1/")] == ["p/d=1/b"]


def _checkpoint(last: int, token: int = 1) -> Checkpoint:
    return Checkpoint(exchange="coinbase", symbol="BTC-USD", start_after_id=0, last_trade_id=last,
                      last_trade_time=NOW, updated_at=NOW, run_id="r", lease_token=token)


def test_checkpoint_commits_are_compare_and_swap_and_forward_only(storage: Storage) -> None:
    store = CheckpointStore(storage)
    first = store.commit(_checkpoint(100), None)
    second = store.commit(_checkpoint(200), first)
    with pytest.raises(CommitConflict, match="changed under us"):
        store.commit(_checkpoint(300), first)  # a stale writer
    with pytest.raises(CommitConflict, match="backwards"):
        store.commit(_checkpoint(150), second)
    loaded = store.load("coinbase", "BTC-USD")
    assert loaded is not None and loaded.value.last_trade_id == 200


def test_two_writers_racing_on_one_checkpoint_exactly_one_wins(storage: Storage) -> None:
    """The lost-update race: both read version v, both try to move the watermark."""
    store = CheckpointStore(storage)
    base = store.commit(_checkpoint(1000), None)
    barrier = threading.Barrier(2)
    results: dict[int, str] = {}

    def writer(last: int, token: int) -> None:
        barrier.wait()
        try:
            store.commit(_checkpoint(last, token), base)
            results[token] = "won"
        except CommitConflict as exc:
            results[token] = str(exc)

    threads = [threading.Thread(target=writer, args=(2000, 7)),
               threading.Thread(target=writer, args=(3000, 8))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r == "won" for r in results.values()) == [False, True]
    winner = next(token for token, r in results.items() if r == "won")
    loser_message = next(r for r in results.values() if r != "won")
    assert "changed under us" in loser_message and "another writer" in loser_message
    stored = store.load("coinbase", "BTC-USD")
    assert stored is not None
    # exactly the winner's checkpoint, whole: nothing of the loser's, nothing half-written
    assert (stored.value.lease_token, stored.value.last_trade_id) == (winner, {7: 2000, 8: 3000}[winner])
    # the loser lost nothing: re-reading and committing on top of the winner succeeds
    retried = store.commit(_checkpoint(4000, 9), stored)
    assert retried.value.last_trade_id == 4000


# -- leases ---------------------------------------------------------------------------------


def test_lease_is_exclusive_until_released_or_expired(locks: LockFactory) -> None:
    clock = FakeClock(1_000_000.0)
    backend = locks(clock)
    a = backend.acquire("ingest/coinbase/BTC-USD", "host:1:a", ttl=30)
    with pytest.raises(LockHeld, match="held by host:1:a"):
        backend.acquire("ingest/coinbase/BTC-USD", "host:2:b", ttl=30)
    backend.release(a)
    b = backend.acquire("ingest/coinbase/BTC-USD", "host:2:b", ttl=30)
    assert b.token == a.token + 1  # fencing tokens only grow
    assert backend.renew(b, ttl=30).expires_at == clock.now + 30
    clock.advance(31)  # b's holder stopped renewing
    c = backend.acquire("ingest/coinbase/BTC-USD", "host:3:c", ttl=30)
    assert c.token == b.token + 1
    with pytest.raises(LockLost):
        backend.renew(b, ttl=30)
    backend.release(b)  # releasing a lost lease is harmless and does not free c's
    with pytest.raises(LockHeld):
        backend.acquire("ingest/coinbase/BTC-USD", "host:4:d", ttl=30)
    record = {r.name: r for r in backend.list()}["ingest/coinbase/BTC-USD"]
    assert record.owner == "host:3:c" and not record.released


def test_racing_acquirers_get_one_lease(locks: LockFactory) -> None:
    backends = [locks(None) for _ in range(8)]
    barrier = threading.Barrier(len(backends))
    won: list[int] = []

    def contender(n: int) -> None:
        barrier.wait()
        try:
            backends[n].acquire("ingest/coinbase/ETH-USD", f"host:{n}:x", ttl=60)
            won.append(n)
        except LockHeld:
            pass

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(len(backends))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    (record,) = [r for r in backends[0].list() if r.name == "ingest/coinbase/ETH-USD"]
    assert record.owner == f"host:{won[0]}:x" and record.token == 1


def test_a_dead_owner_on_this_host_is_taken_over_at_once(locks: LockFactory) -> None:
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    backend = locks(None)
    owner = replace(processes.me(), pid=dead, start_ticks=1)  # this host, boot and PID namespace
    backend.acquire("run/x", f"{owner}:zz", ttl=300)
    lease = backend.acquire("run/x", "me:1:a", ttl=300)
    assert lease.token == 2


def test_keeper_renews_and_detects_loss(locks: LockFactory) -> None:
    clock = FakeClock(1_000_000.0)
    keeper = LeaseKeeper(locks(clock), "host:1:a", ttl=30, clock=clock)
    lease = keeper.acquire("ingest/coinbase/ETH-USD")
    keeper.check(lease)
    clock.advance(26)  # heartbeat late: less than ttl/6 left
    with pytest.raises(LockLost, match="about to expire"):
        keeper.check(lease)
    keeper.release(lease)
    with pytest.raises(LockLost):
        keeper.check(lease)


def test_forgotten_leases_leave_no_record(locks: LockFactory) -> None:
    backend = locks(None)
    lease = backend.acquire("run/20261127-abc", "me:1:a", ttl=30)
    kept = backend.acquire("ingest/coinbase/BTC-USD", "me:1:a", ttl=30)
    backend.release(lease, forget=True)
    backend.release(kept)
    assert [(r.name, r.released) for r in backend.list()] == [("ingest/coinbase/BTC-USD", True)]


def test_lock_names_are_validated(locks: LockFactory) -> None:
    with pytest.raises(InvalidIdentifier):
        locks(None).acquire("ingest/../../etc", "o", ttl=1)


def test_one_lock_table_serves_several_lakes(moto_url: str) -> None:
    table = f"locks-{uuid.uuid4().hex[:10]}"
    create_lock_table(moto_url, table)
    aws = Aws.from_env(aws_env(moto_url))
    prod, staging = DynamoLocks(table, aws, "s3://prod/state"), DynamoLocks(table, aws, "s3://staging/state")
    prod.acquire("ingest/coinbase/BTC-USD", "host:1:a", ttl=60)
    staging.acquire("ingest/coinbase/BTC-USD", "host:2:b", ttl=60)  # another lake: not held
    assert [r.owner for r in prod.list()] == ["host:1:a"]
    assert [r.owner for r in staging.list()] == ["host:2:b"]

"""When the query view may read a Delta snapshot's files directly (TradesTable.data_files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pytest

from schemahub.table.delta import TradesTable

LIVE = "exchange=coinbase/trade_date=2026-11-20/part-00000-3aafbb41-c000.zstd.parquet"


@dataclass
class Protocol:
    min_reader_version: int = 1
    reader_features: list[str] | None = None


@dataclass
class Snapshot:
    """The two things data_files reads from a DeltaTable: its protocol and its add actions."""

    paths: list[str] = field(default_factory=lambda: [LIVE])
    partitions: list[tuple[str, str]] = field(default_factory=lambda: [("coinbase", "2026-11-20")])
    protocol_versions: Protocol = field(default_factory=Protocol)

    def protocol(self) -> Protocol:
        return self.protocol_versions

    def get_add_actions(self, flatten: bool) -> pa.Table:
        assert flatten
        days = pa.array([day for _, day in self.partitions]).cast(pa.date32())
        return pa.table({"path": self.paths,
                         "partition.exchange": [exchange for exchange, _ in self.partitions],
                         "partition.trade_date": days})


def files(snapshot: Any, uri: str = "/lake/table/trades") -> list[str] | None:
    return TradesTable(uri).data_files(snapshot)


def test_a_table_written_by_schemahub_is_read_file_by_file() -> None:
    assert files(Snapshot()) == [f"/lake/table/trades/{LIVE}"]
    assert files(Snapshot(), "s3://bucket/lake/table/trades/") == [f"s3://bucket/lake/table/trades/{LIVE}"]


@pytest.mark.parametrize(("snapshot", "uri"), [
    (Snapshot(protocol_versions=Protocol(3, ["deletionVectors"])), "/lake/table/trades"),
    (Snapshot(protocol_versions=Protocol(2)), "/lake/table/trades"),  # column mapping
    (Snapshot(paths=["data/part-0.parquet"]), "/lake/table/trades"),  # another writer's layout
    (Snapshot(partitions=[("kraken", "2026-11-20")]), "/lake/table/trades"),  # path disagrees with the log
    (Snapshot(paths=[LIVE.replace(".parquet", ".parquet?x=1")]), "/lake/table/trades"),
    (Snapshot(), "/data/env=prod/table/trades"),  # would be read as a partition column
    (Snapshot(), "/data/lake[1]/table/trades"),  # would be read as a glob
    (Snapshot(paths=[], partitions=[]), "/lake/table/trades"),  # empty: the Delta reader knows the schema
])
def test_anything_a_parquet_reader_could_misread_falls_back_to_the_delta_reader(snapshot: Snapshot,
                                                                                 uri: str) -> None:
    assert files(snapshot, uri) is None

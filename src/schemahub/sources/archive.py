"""Bulk trade archives: venue-neutral periods, downloads and CSV inspection.

A venue that publishes its trades as files (Binance: one zip per symbol, dataset and day
or month, with a sha256 ``.CHECKSUM`` beside it) gets an ``ArchiveSource`` subclass that
knows its URLs and its CSV columns; the rest lives here:

* ``Period`` and ``plan_periods`` - whole calendar months as monthly files, the days
  around them as daily ones;
* ``ArchiveSource.fetch`` - the checksum first, then the file streamed to a local spool
  file and verified before anyone may store it (a 404 of either means "not published");
* ``inspect`` - one streaming pass over the CSV (a megabyte block at a time, so memory
  does not grow with the file): header row or not, the time unit checked against the
  file's dates, the id range, whether rows are sorted, and every id the file leaves out.
"""

from __future__ import annotations

import io
import re
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from schemahub.errors import ArchiveError
from schemahub.http.client import ExchangeClient
from schemahub.metrics.counters import RequestStats
from schemahub.sources.base import Product
from schemahub.sources.zipstream import GzipMember, MemberReader

PeriodKind = Literal["daily", "monthly"]
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BLOCK = 1 << 20
_TIME_DIGITS = {"ms": 13, "us": 16}


@dataclass(frozen=True, order=True)
class Period:
    """One archive file's span: a UTC day, or a calendar month."""

    start: date
    kind: PeriodKind

    @property
    def end(self) -> date:
        """The first day after the period."""
        if self.kind == "daily":
            return self.start + timedelta(days=1)
        months = self.start.year * 12 + self.start.month  # the next month, counted from year 0
        return date(months // 12, months % 12 + 1, 1)

    @property
    def label(self) -> str:
        return self.start.isoformat() if self.kind == "daily" else self.start.strftime("%Y-%m")

    def bounds_us(self, utc_offset_h: int = 0) -> tuple[int, int]:
        """[start, end) in µs; a venue whose days begin at midnight of UTC+h starts them h hours earlier."""
        shift = utc_offset_h * 3_600_000_000
        return day_us(self.start) - shift, day_us(self.end) - shift

    def days(self) -> list[Period]:
        day, end = self.start, self.end
        out = []
        while day < end:
            out.append(Period(day, "daily"))
            day += timedelta(days=1)
        return out


DAY_IDS = 1_000_000_000
"""Venues that number each day's rows from 1 (Bybit): a trade's id is ``YYYYMMDD`` x this + its number."""


def day_base(day: date) -> int:
    """The id before a day's first trade, for venues that number each day's rows."""
    return int(day.strftime("%Y%m%d")) * DAY_IDS


def day_us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000


def plan_periods(first: date, last: date, *, monthly: bool = True) -> list[Period]:
    """Periods covering the days [first, last]: months that lie wholly inside as monthly files
    (when the venue has them), the other days as daily ones, in time order."""
    periods: list[Period] = []
    day = first
    while day <= last:
        month = Period(day.replace(day=1), "monthly")
        if monthly and day.day == 1 and month.end - timedelta(days=1) <= last:
            periods.append(month)
            day = month.end
        else:
            periods.append(Period(day, "daily"))
            day += timedelta(days=1)
    return periods


@dataclass(frozen=True)
class CsvLayout:
    """A dataset's CSV columns, and which of them hold the id and the time."""

    columns: tuple[str, ...]
    id_column: str
    time_column: str
    micros_from: date | None = None
    """Files of periods from this day on carry µs times, older ones ms (None: always ms)."""
    header: tuple[str, ...] | None = None
    """The header row files of this venue start with, when its data rows do not start with a
    digit (OKX's start with the instrument): a first line whose id field is not a number is a
    header, and a header other than this one is refused. None: a first line that does not
    start with a digit is a header (Binance)."""
    utc_offset_h: int = 0
    """A file's day starts at midnight of UTC+h (OKX: 8, its day D runs from D-1 16:00 UTC)."""
    named_columns: bool = False
    """Files always start with a header, and columns are found by its names (Bybit's files
    gained a column over the years): ``columns`` are the names a file must have."""

    def time_unit(self, period: Period) -> str:
        return "us" if self.micros_from is not None and period.start >= self.micros_from else "ms"

    def starts_with_header(self, first_line: bytes, filename: str) -> bool:
        if self.named_columns:
            names = first_line.decode("utf-8", "replace").strip().split(",")
            lacking = [c for c in self.columns if c not in names]
            if lacking:
                raise ArchiveError(f"{filename} starts with {first_line[:200]!r}: no column "
                                   f"{', '.join(lacking)} (its header must name {', '.join(self.columns)})")
            return True
        if self.header is None:
            return not first_line[:1].isdigit()
        fields = [f.strip().lower() for f in first_line.decode("utf-8", "replace").strip().split(",")]
        position = self.columns.index(self.id_column)
        if len(fields) > position and fields[position].isdigit():
            return False  # a data row: the file has no header
        if tuple(fields) != self.header:
            raise ArchiveError(f"{filename} starts with the header {first_line[:200]!r}, not the known "
                               f"{','.join(self.header)!r}: refused rather than guessed")
        return True


@dataclass(frozen=True)
class Fetched:
    """An archive file downloaded to the spool and verified against its published checksum."""

    period: Period
    dataset: str
    filename: str
    url: str
    path: Path
    sha256: str
    size: int
    fetched_at: datetime


@dataclass
class CsvFacts:
    """What one pass over an archive CSV found."""

    rows: int = 0
    header: bool = False
    time_unit: str = "ms"
    first_id: int | None = None
    last_id: int | None = None
    first_time_us: int | None = None
    last_time_us: int | None = None
    in_order: bool = True
    """Rows sorted by id (a file may not be: then the id check sorts them itself)."""
    duplicates: int = 0
    missing: list[tuple[int, int]] = field(default_factory=list)
    """Inclusive id ranges between ``first_id`` and ``last_id`` that no row has."""


class ArchiveSource(ABC):
    """One venue's archive host: where files are, and how their CSVs are laid out."""

    name: ClassVar[str]
    default_url: ClassVar[str]
    monthly: ClassVar[bool] = True
    checksums: ClassVar[bool] = True
    """The venue publishes a ``.CHECKSUM`` (sha256) beside every file. Without one (OKX, Bybit)
    a file is verified by its container's own CRC and by inspection (ids, times, header)."""
    datasets: ClassVar[dict[str, str]]
    """REST endpoint -> the archive dataset with the same ids (``aggTrades`` -> ``aggTrades``)."""
    layouts: ClassVar[dict[str, CsvLayout]]
    mappings: ClassVar[dict[str, str]]
    """Dataset -> the transform mapping of its files (``<venue>.<mapping>.yaml``)."""

    def __init__(self, client: ExchangeClient) -> None:
        self.client = client

    @abstractmethod
    def path(self, product: Product, dataset: str, period: Period) -> str:
        """The file's path on the host."""

    day_numbered: ClassVar[bool] = False
    """Each (daily) file numbers its rows from 1 (Bybit): trade ids are ``day_base`` + the number."""

    def id_base(self, period: Period) -> int:
        """Added to a file's ids to make trade ids (0: the file carries the venue's own ids)."""
        return day_base(period.start) if self.day_numbered else 0

    def listing(self, product: Product, dataset: str, stats: RequestStats | None = None) -> set[date] | None:
        """The days the host lists files for, where it publishes an index (None: it does not,
        every day is asked for). A venue without a REST history needs it: a cold start from
        --since 2020 would otherwise ask for every day since."""
        return None

    def filename(self, product: Product, dataset: str, period: Period) -> str:
        return self.path(product, dataset, period).rsplit("/", 1)[-1]

    def dataset_for(self, endpoint: str) -> str | None:
        return self.datasets.get(endpoint)

    def fetch(self, product: Product, dataset: str, period: Period, target: Path,
              stats: RequestStats | None = None,
              on_bytes: Callable[[int], None] | None = None) -> Fetched | None:
        """Download one file to ``target`` (a spool path) and verify it; None when it is not
        published. A persistent checksum mismatch raises ``ChecksumMismatch``."""
        path = self.path(product, dataset, period)
        filename = path.rsplit("/", 1)[-1]
        expected: str | None = None
        if self.checksums:
            text = io.BytesIO()
            if self.client.download(path + ".CHECKSUM", text, stats=stats) is None:
                return None
            expected = parse_checksum(text.getvalue(), filename)
        with open(target, "w+b") as fh:
            got = self.client.download(path, fh, expect_sha256=lambda: expected, stats=stats,
                                       on_bytes=on_bytes)
        if got is None:
            target.unlink(missing_ok=True)
            return None
        return Fetched(period, dataset, filename, got.url, target, got.sha256, got.size, got.fetched_at)


def parse_checksum(data: bytes, filename: str) -> str:
    """The sha256 in a ``sha256sum`` line (``<hex>  <name>``), checked to name ``filename``."""
    text = data.decode("ascii", errors="replace").strip()
    digest, _, name = text.partition(" ")
    name = name.strip().lstrip("*")
    if not _SHA256.fullmatch(digest.lower()) or (name and name != filename):
        raise ArchiveError(f"{filename}.CHECKSUM is not '<sha256>  {filename}': {text[:120]!r}")
    return digest.lower()


# -- inspection ---------------------------------------------------------------------------------


def csv_member(zf: zipfile.ZipFile, filename: str) -> zipfile.ZipInfo:
    """The one CSV inside an archive zip."""
    members = [m for m in zf.infolist() if not m.is_dir()]
    if len(members) != 1 or not members[0].filename.endswith(".csv"):
        names = ", ".join(m.filename for m in members[:5]) or "nothing"
        raise ArchiveError(f"{filename} should hold one CSV file, it holds {names}")
    return members[0]


def _open(path: Path, filename: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"{filename} is not a readable zip: {exc}") from None


def _member(path: Path, filename: str) -> tuple[zipfile.ZipInfo, zipfile.ZipFile]:
    zf = _open(path, filename)
    try:
        return csv_member(zf, filename), zf
    except BaseException:
        zf.close()
        raise


def _csv(path: Path, filename: str) -> io.BufferedReader:
    """The archive's CSV as a buffered stream: the one member of a zip (inflated by ISA-L, its
    CRC checked), or a gzip file's content (ISA-L's gzip reader checks its CRC at the end)."""
    if filename.endswith(".gz"):
        return io.BufferedReader(GzipMember(path, filename), _BLOCK)
    info, zf = _member(path, filename)
    zf.close()
    return io.BufferedReader(MemberReader(path, info, filename), _BLOCK)


def starts_with_header(path: Path, filename: str, layout: CsvLayout) -> bool:
    with _csv(path, filename) as fh:
        first = fh.read(4096) or b""
    return layout.starts_with_header(first.split(b"\n", 1)[0], filename)


def read_batches(path: Path, filename: str, layout: CsvLayout, columns: list[str],
                 types: dict[str, pa.DataType], header: bool | None = None) -> Iterator[pa.RecordBatch]:
    """``columns`` of the CSV inside the archive at ``path``, a block at a time (``header``: whether
    it starts with a header row, as its inspection found; None: look)."""
    if header is None:
        header = starts_with_header(path, filename, layout)
    with _csv(path, filename) as fh:
        if not fh.peek(1):
            return  # no rows at all (Arrow refuses an empty file)
        if layout.named_columns:  # the header row names the columns
            options = pacsv.ReadOptions(block_size=_BLOCK, use_threads=True)
        else:
            options = pacsv.ReadOptions(column_names=list(layout.columns), skip_rows=1 if header else 0,
                                        block_size=_BLOCK, use_threads=True)
        convert = pacsv.ConvertOptions(include_columns=columns, column_types=types,
                                       true_values=["True", "true"], false_values=["False", "false"])
        try:
            yield from pacsv.open_csv(fh, read_options=options, convert_options=convert)
        except (pa.ArrowInvalid, OSError, EOFError) as exc:
            raise ArchiveError(f"{filename}: {str(exc).splitlines()[0][:300]}") from None


def inspect(path: Path, filename: str, layout: CsvLayout, period: Period, id_base: int = 0) -> CsvFacts:
    """One pass over the file: ids (plus ``id_base``), times and order, checked rather than assumed."""
    unit = layout.time_unit(period)
    lo_us, hi_us = period.bounds_us(layout.utc_offset_h)
    scale = 1 if unit == "us" else 1000
    facts = CsvFacts(time_unit=unit, header=starts_with_header(path, filename, layout))
    previous: int | None = None
    types = {layout.id_column: pa.int64(), layout.time_column: pa.int64()}
    for batch in read_batches(path, filename, layout, [layout.id_column, layout.time_column], types,
                              facts.header):
        if batch.num_rows == 0:
            continue
        ids, times = batch.column(layout.id_column), batch.column(layout.time_column)
        if ids.null_count or times.null_count:
            raise ArchiveError(f"{filename}: a row after row {facts.rows} has no id or no time")
        if id_base:
            ids = pc.add(ids, id_base)
        _check_times(times, unit, scale, lo_us, hi_us, filename, period)
        facts.first_time_us = _min(facts.first_time_us, pc.min(times).as_py() * scale)
        facts.last_time_us = _max(facts.last_time_us, pc.max(times).as_py() * scale)
        facts.first_id = _min(facts.first_id, pc.min(ids).as_py())
        facts.last_id = _max(facts.last_id, pc.max(ids).as_py())
        facts.rows += batch.num_rows
        if facts.in_order:  # while sorted, the steps between ids say all there is to know
            steps = pc.subtract(ids.slice(1), ids.slice(0, len(ids) - 1))
            smallest = pc.min(steps).as_py() if len(ids) > 1 else None
            first_step = None if previous is None else ids[0].as_py() - previous
            if (smallest is not None and smallest < 1) or (first_step is not None and first_step < 1):
                facts.in_order = False
            else:
                _jumps(ids, steps, previous, facts.missing)
            previous = ids[-1].as_py()
    if not facts.in_order:
        _recount(facts, path, filename, layout, id_base)
    return facts


def _recount(facts: CsvFacts, path: Path, filename: str, layout: CsvLayout, id_base: int) -> None:
    """Rows out of id order: sort every id of the file (8 bytes a row) and look again."""
    ids = pa.concat_arrays([batch.column(layout.id_column) for batch in
                            read_batches(path, filename, layout, [layout.id_column],
                                         {layout.id_column: pa.int64()})])
    ids = pc.add(ids, id_base) if id_base else ids
    ordered = pc.sort_indices(ids)
    ids = pc.take(ids, ordered)
    steps = pc.subtract(ids.slice(1), ids.slice(0, len(ids) - 1))
    facts.duplicates = int(pc.sum(pc.equal(steps, 0)).as_py() or 0)
    facts.missing = []
    _jumps(ids, steps, None, facts.missing)


def _jumps(ids: pa.Array, steps: pa.Array, previous: int | None, missing: list[tuple[int, int]]) -> None:
    if previous is not None and ids[0].as_py() > previous + 1:
        missing.append((previous + 1, ids[0].as_py() - 1))
    for index in pc.indices_nonzero(pc.greater(steps, 1)).to_pylist():
        missing.append((ids[index].as_py() + 1, ids[index + 1].as_py() - 1))


def _check_times(times: pa.Array, unit: str, scale: int, lo_us: int, hi_us: int, filename: str,
                 period: Period) -> None:
    low, high = pc.min(times).as_py(), pc.max(times).as_py()
    for value in (low, high):
        digits = len(str(value))
        if digits != _TIME_DIGITS[unit]:
            raise ArchiveError(
                f"{filename}: time {value} has {digits} digits, but a file of {period.label} must carry "
                f"{'microseconds (16 digits)' if unit == 'us' else 'milliseconds (13 digits)'}")
    if low * scale < lo_us or high * scale >= hi_us:
        outside = low if low * scale < lo_us else high
        raise ArchiveError(f"{filename}: time {outside} ({unit}) lies outside {period.label}")


def _min(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def _max(a: int | None, b: int) -> int:
    return b if a is None else max(a, b)


def lookup_times(path: Path, filename: str, layout: CsvLayout, period: Period,
                 ids: set[int], id_base: int = 0) -> dict[int, int]:
    """The times (µs) of the rows with these ids (``id_base`` included): one more streaming pass."""
    scale = 1 if layout.time_unit(period) == "us" else 1000
    wanted = pa.array(sorted(i - id_base for i in ids), pa.int64())
    found: dict[int, int] = {}
    types = {layout.id_column: pa.int64(), layout.time_column: pa.int64()}
    for batch in read_batches(path, filename, layout, [layout.id_column, layout.time_column], types):
        hits = batch.filter(pc.is_in(batch.column(layout.id_column), value_set=wanted))
        for row_id, when in zip(hits.column(layout.id_column).to_pylist(),
                                hits.column(layout.time_column).to_pylist(), strict=True):
            found.setdefault(row_id + id_base, when * scale)
        if len(found) == len(ids):
            break
    return found

"""Prometheus metrics of a lake, for ``schemahub serve --metrics``.

Pipeline commands are batch jobs: they end before a scraper could reach them. So instead
of each run exposing its own counters, the exporter reads what runs leave behind - the
run history (metrics/runs.py) and the checkpoints - and exposes cumulative counters over
all recorded runs plus live gauges (freshness). Any host that can read the lake can
serve them; restarts lose nothing. New run records are read incrementally (each once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from schemahub.errors import SchemahubError
from schemahub.infra.checkpoints import CheckpointStore
from schemahub.infra.storage import Storage
from schemahub.metrics.counters import LATENCY_BUCKETS
from schemahub.metrics.latency import merge
from schemahub.metrics.runs import RUNS_PREFIX, RunRecord, read_record

log = logging.getLogger("schemahub.metrics")

BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2, "dead": 3}


class LakeCollector(Collector):
    def __init__(self, storage: Storage, now: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self._now = now
        self._records: dict[str, RunRecord] = {}
        self._lock = threading.Lock()

    def _refresh(self) -> list[RunRecord]:
        with self._lock:
            for info in self.storage.list(RUNS_PREFIX):
                if info.key not in self._records:
                    try:
                        self._records[info.key] = read_record(self.storage, info.key)
                    except ValueError:
                        continue
            return sorted(self._records.values(), key=lambda r: r.started_at)

    def collect(self) -> Iterator[Metric]:
        records = self._refresh()
        yield from _run_metrics(records)
        yield from _http_metrics([r for r in records if r.command == "ingest"])
        yield from _product_metrics(records)
        yield from self._freshness()

    def _freshness(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily("schemahub_freshness_lag_seconds",
                                "Seconds since the newest ingested trade of each product (its checkpoint)",
                                labels=["exchange", "symbol"])
        store = CheckpointStore(self.storage)
        now = self._now()
        for key, exchange, sym in store.listed():
            try:
                stored = store.load(exchange, sym)
            except SchemahubError as exc:  # a corrupt checkpoint is `check`'s business, not a scrape's
                log.warning("freshness of %s unknown: %s", key, exc)
                continue
            newest = stored.value.last_trade_time if stored is not None else None
            if stored is not None and newest is not None:
                lag.add_metric([exchange, stored.value.symbol], now - newest.timestamp())
        yield lag


def _run_metrics(records: list[RunRecord]) -> Iterator[Metric]:
    runs = CounterMetricFamily("schemahub_runs", "Recorded runs by command and outcome",
                               labels=["command", "status"])
    duration = CounterMetricFamily("schemahub_run_duration_seconds",
                                   "Total seconds spent in runs, by command", labels=["command"])
    trades = CounterMetricFamily("schemahub_trades", "Trades ingested (ingest) or rows written (transform)",
                                 labels=["command"])
    last = GaugeMetricFamily("schemahub_last_run_timestamp_seconds", "When the last run of a command ended",
                             labels=["command"])
    success = GaugeMetricFamily("schemahub_last_run_success", "1 if the last run of a command succeeded",
                                labels=["command"])
    throughput = GaugeMetricFamily("schemahub_last_run_trades_per_second",
                                   "Trades (ingest) or rows (transform) per second in the last run",
                                   labels=["command"])
    counts: dict[tuple[str, str], int] = defaultdict(int)
    seconds: dict[str, float] = defaultdict(float)
    volume: dict[str, int] = defaultdict(int)
    latest: dict[str, RunRecord] = {}
    for r in records:
        counts[(r.command, r.status)] += 1
        seconds[r.command] += r.duration_s or 0.0
        volume[r.command] += r.trades
        latest[r.command] = r
    for (command, status), n in sorted(counts.items()):
        runs.add_metric([command, status], n)
    for command in sorted(latest):
        r = latest[command]
        duration.add_metric([command], seconds[command])
        trades.add_metric([command], volume[command])
        last.add_metric([command], (r.finished_at or r.started_at).timestamp())
        success.add_metric([command], float(r.status == "ok"))
        throughput.add_metric([command], r.trades / r.duration_s if r.duration_s else 0.0)
    yield from (runs, duration, trades, last, success, throughput)


def _http_metrics(records: list[RunRecord]) -> Iterator[Metric]:
    requests = CounterMetricFamily("schemahub_http_requests", "Exchange requests by answer",
                                   labels=["exchange", "status"])
    latency = HistogramMetricFamily("schemahub_http_request_duration_seconds",
                                    "Exchange request latency (answered requests)", labels=["exchange"])
    named = {
        "retries": ("schemahub_http_retries", "Retried exchange requests"),
        "limiter_wait_s": ("schemahub_rate_limiter_wait_seconds", "Seconds threads waited for the limiter"),
        "bytes": ("schemahub_http_received_bytes", "Bytes received from the exchange"),
        "breaker_trips": ("schemahub_breaker_trips", "Times the circuit breaker opened"),
        "banned": ("schemahub_bans", "418 answers: the exchange banned the IP"),
    }
    families = {k: CounterMetricFamily(n, h, labels=["exchange"]) for k, (n, h) in named.items()}
    breaker = GaugeMetricFamily("schemahub_breaker_state",
                                "Circuit breaker at the end of the last run (0 closed, 1 half-open, 2 open, "
                                "3 dead)", labels=["exchange"])
    statuses: dict[tuple[str, str], int] = defaultdict(int)
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    histograms: dict[str, list[list[int]]] = defaultdict(list)
    state: dict[str, str] = {}
    for r in records:
        for ex in r.exchanges:
            for status, n in ex.statuses.items():
                statuses[(ex.exchange, status)] += n
            for key in (*named, "latency_s"):
                totals[ex.exchange][key] += float(getattr(ex, key))
            if ex.latency_buckets:
                histograms[ex.exchange].append(ex.latency_buckets)
            state[ex.exchange] = ex.breaker_state
    for (exchange, status), n in sorted(statuses.items()):
        requests.add_metric([exchange, status], n)
    for exchange in sorted(totals):
        for key, family in families.items():
            family.add_metric([exchange], totals[exchange][key])
        merged = merge(histograms[exchange])
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, LATENCY_BUCKETS), "+Inf"], merged, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        latency.add_metric([exchange], buckets, totals[exchange]["latency_s"])
        breaker.add_metric([exchange], BREAKER_STATES.get(state[exchange], 0))
    yield from (requests, latency, *families.values(), breaker)


def _product_metrics(records: list[RunRecord]) -> Iterator[Metric]:
    ingested = CounterMetricFamily("schemahub_ingested_trades", "Trades ingested per product",
                                   labels=["exchange", "symbol"])
    raw_bytes = CounterMetricFamily("schemahub_raw_bytes_written", "Bytes written to the raw lake",
                                    labels=["exchange"])
    gaps = GaugeMetricFamily("schemahub_unexplained_gaps", "Trade ids missing without explanation, at the "
                             "last check", labels=["exchange", "symbol"])
    trades: dict[tuple[str, str], int] = defaultdict(int)
    written: dict[str, int] = defaultdict(int)
    unexplained: dict[tuple[str, str], int] = {}
    for r in records:
        for p in r.products:
            if r.command == "ingest":
                trades[(p.exchange, p.symbol)] += p.trades
                written[p.exchange] += p.raw_bytes or 0
            if r.command == "check" and p.unexplained_gaps is not None:
                unexplained[(p.exchange, p.symbol)] = p.unexplained_gaps
    for labels, n in sorted(trades.items()):
        ingested.add_metric(list(labels), n)
    for exchange, n in sorted(written.items()):
        raw_bytes.add_metric([exchange], n)
    for labels, n in sorted(unexplained.items()):
        gaps.add_metric(list(labels), n)
    yield from (ingested, raw_bytes, gaps)


def render(storage: Storage) -> bytes:
    """The exposition text for one scrape (a fresh collector: for tests and one-shot use)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(LakeCollector(storage))
    return generate_latest(registry)

"""CloudWatch Embedded Metric Format: a run's metrics as log lines, no AWS call on the hot path.

With ``SCHEMAHUB_METRICS=cloudwatch``, each finished run prints EMF documents (one JSON
object per line) to stderr; on ECS/Lambda the log driver ships them to CloudWatch Logs,
which extracts the metrics. The documents are built by the official
``aws-embedded-metrics`` serializer; only the sink is ours (stderr, because stdout
carries command output such as ``--json`` reports).

Namespace ``SchemaHub`` (settings: ``SCHEMAHUB_METRICS_NAMESPACE``). Metrics, by dimension set:

* ``Command``            RunDuration (s), RunFailed, RunNeedsAttention, Trades; for ingest
                         also FreshnessLagMax (s, the stalest product) and BannedMax (1 when
                         any exchange banned the IP), for check also
                         ChecksFailed and UnexplainedGaps (all products): one series each
                         to alarm on
* ``Check``              CheckFailed (0/1 per data-quality check of a ``check`` run)
* ``Exchange``           Requests, Http429, Http5xx, Retries, BreakerTrips, Banned,
                         RateLimiterWait (s), LatencyP50/LatencyP95 (ms), BytesReceived
* ``Exchange, Symbol``   TradesIngested, FreshnessLag (s), UnexplainedGaps
"""

from __future__ import annotations

import sys
from typing import IO, Any

from aws_embedded_metrics.logger.metrics_context import MetricsContext
from aws_embedded_metrics.serializers.log_serializer import LogSerializer

from schemahub.metrics.runs import RunRecord

NAMESPACE = "SchemaHub"


def documents(record: RunRecord, namespace: str = NAMESPACE) -> list[str]:
    """The EMF log lines for one run."""
    lines: list[str] = []
    timestamp = int((record.finished_at or record.started_at).timestamp() * 1000)

    def document(dimensions: dict[str, str], metrics: list[tuple[str, float, str]]) -> None:
        context = MetricsContext.empty()
        context.namespace = namespace
        context.meta["Timestamp"] = timestamp
        context.put_dimensions(dimensions)
        for name, value, unit in metrics:
            context.put_metric(name, value, unit)
        context.set_property("run_id", record.run_id)
        context.set_property("host", record.host)
        lines.extend(LogSerializer.serialize(context))

    checks: list[dict[str, Any]] = record.details.get("checks", [])
    finished = record.finished_at or record.started_at
    # Freshness is what an ingest run saw: each product's newest trade against the run's end.
    lag_s = {(p.exchange, p.symbol): (finished - p.last_trade_time).total_seconds()
             for p in record.products if record.command == "ingest" and p.last_trade_time is not None}
    lags = list(lag_s.values())
    gaps = [p.unexplained_gaps for p in record.products if p.unexplained_gaps is not None]
    document({"Command": record.command}, [
        ("RunDuration", record.duration_s or 0.0, "Seconds"),
        ("RunFailed", float(record.status in ("failed", "interrupted")), "Count"),
        ("RunNeedsAttention", float(record.status == "attention"), "Count"),
        ("Trades", float(record.trades), "Count"),
        *([("FreshnessLagMax", max(lags), "Seconds")] if lags else []),
        *([("BannedMax", float(max(ex.banned for ex in record.exchanges)), "Count")]
          if record.command == "ingest" and record.exchanges else []),
        *([("ChecksFailed", float(sum(c["status"] == "fail" for c in checks)), "Count")] if checks else []),
        *([("UnexplainedGaps", float(sum(gaps)), "Count")] if record.command == "check" else []),
    ])
    for check in checks:
        document({"Check": check["name"]}, [("CheckFailed", float(check["status"] == "fail"), "Count")])
    for ex in record.exchanges:
        metrics = [("Requests", ex.requests, "Count"), ("Http429", ex.rate_limited, "Count"),
                   ("Http5xx", ex.server_errors, "Count"), ("Retries", ex.retries, "Count"),
                   ("BreakerTrips", ex.breaker_trips, "Count"), ("Banned", ex.banned, "Count"),
                   ("RateLimiterWait", ex.limiter_wait_s, "Seconds"), ("BytesReceived", ex.bytes, "Bytes")]
        for name, q in (("LatencyP50", 0.5), ("LatencyP95", 0.95)):
            value = ex.latency_ms(q)
            if value is not None:
                metrics.append((name, value, "Milliseconds"))
        document({"Exchange": ex.exchange}, [(n, float(v), u) for n, v, u in metrics])
    for p in record.products:
        metrics = []
        if record.command == "ingest":
            metrics.append(("TradesIngested", float(p.trades), "Count"))
            if (p.exchange, p.symbol) in lag_s:
                metrics.append(("FreshnessLag", lag_s[(p.exchange, p.symbol)], "Seconds"))
        if p.unexplained_gaps is not None:
            metrics.append(("UnexplainedGaps", float(p.unexplained_gaps), "Count"))
        if metrics:
            document({"Exchange": p.exchange, "Symbol": p.symbol}, metrics)
    return lines


def emit(record: RunRecord, namespace: str = NAMESPACE, stream: IO[str] | None = None) -> None:
    out = stream or sys.stderr
    for line in documents(record, namespace):
        out.write(line + "\n")
    out.flush()

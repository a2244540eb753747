"""The operating routine as one pipeline: ingest -> transform -> repair -> certify -> check.

``schemahub run`` (and the ECS schedule) call :func:`run_once`; ``--every`` repeats it. Each
step runs whatever the previous ones did - a failed exchange in ingest does not keep the
others' trades out of the table, and ``check`` reports on whatever state the lake is in -
and each step's outcome is kept with its cause. A stop request (SIGTERM/SIGINT) is seen
inside a step within seconds (every stage waits on the same token) and no further step starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from schemahub import pipeline
from schemahub.errors import SchemahubError
from schemahub.ingest.exchanges import IngestRequest
from schemahub.ingest.report import exit_code
from schemahub.quality.options import CheckOptions
from schemahub.settings import Settings
from schemahub.stop import StopToken

StepStatus = Literal["ok", "attention", "failed", "skipped", "interrupted"]
STEPS = ("ingest", "transform", "repair", "certify", "check")


@dataclass
class StepResult:
    name: str
    status: StepStatus
    summary: str
    elapsed_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RoutineReport:
    started_at: datetime
    steps: list[StepResult] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        return any(s.status == "interrupted" for s in self.steps)

    @property
    def ok(self) -> bool:
        return all(s.status in ("ok", "skipped") for s in self.steps)

    @property
    def exit_code(self) -> int:
        """0 all well, 130 stopped, 1 a step failed or needs attention."""
        return 130 if self.interrupted else 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        return {"started_at": self.started_at.isoformat(), "ok": self.ok, "exit_code": self.exit_code,
                "steps": [{"name": s.name, "status": s.status, "summary": s.summary,
                           "elapsed_s": round(s.elapsed_s, 3), "details": s.details} for s in self.steps]}


def run_once(settings: Settings, request: IngestRequest, *, check: CheckOptions | None = None,
             stop: StopToken | None = None,
             on_step: Callable[[StepResult], None] | None = None) -> RoutineReport:
    """One pass of the routine over the exchanges of ``request``."""
    from schemahub.transform.report import TransformOptions

    stop = stop or StopToken()
    names = set(request.exchanges)
    report = RoutineReport(datetime.now(UTC))

    def ingest() -> StepResult:
        reports = pipeline.ingest(settings, request, stop=stop)
        code = exit_code(reports)
        trades = sum(p.trades for r in reports for p in r.products)
        failed = [f"{r.exchange} {p.symbol}: {p.error}" for r in reports for p in r.products if p.error]
        status: StepStatus = "interrupted" if code == 130 else "ok" if code == 0 else "failed"
        return StepResult("ingest", status, f"{trades:,} trades from {len(reports)} exchange(s)"
                          + (f"; {len(failed)} product(s) failed" if failed else ""),
                          details={"failed": failed[:20]})

    def transform() -> StepResult:
        result = pipeline.transform(settings, TransformOptions(), stop=stop)
        status: StepStatus = ("interrupted" if stop.stopped else "attention" if result.needs_attention
                              else "ok")
        rows = sum(p.rows_written for p in result.products)
        return StepResult("transform", status, f"{rows:,} rows written", details=result.to_dict())

    def repair() -> StepResult:
        result = pipeline.repair(settings, sorted(names), stop=stop)
        status: StepStatus = "interrupted" if result.interrupted else "failed" if result.failed else "ok"
        fetched = sum(1 for i in result.items if i.fetches)
        listed = len(result.items) - fetched
        return StepResult("repair", status, f"{fetched} range(s) fetched again"
                          + (f", {listed} disagreeing day(s) listed" if listed else ""),
                          details={"items": [i.to_dict() for i in result.items]})

    def certify() -> StepResult:
        result = pipeline.certify(settings, names, stop=stop)
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(result.by_status.items())) or "no day changed"
        status: StepStatus = "interrupted" if stop.stopped else "ok"
        return StepResult("certify", status, f"{result.computed} day(s) certified ({statuses})",
                          details=result.to_dict())

    def checked() -> StepResult:
        results = pipeline.check(settings, check or CheckOptions())
        failed = [r for r in results if r.status == "fail"]
        status: StepStatus = "failed" if failed else "ok"
        summary = "; ".join(f"{r.name}: {r.summary}" for r in failed) or f"{len(results)} checks passed"
        return StepResult("check", status, summary, details={"failed": [r.name for r in failed]})

    for name, step in zip(STEPS, (ingest, transform, repair, certify, checked), strict=True):
        if stop.stopped:
            report.steps.append(StepResult(name, "skipped", f"not started: {stop.reason}"))
            continue
        started = time.monotonic()
        try:
            result = step()
        except SchemahubError as exc:  # one step failing does not keep the next from running
            result = StepResult(name, "interrupted" if stop.stopped else "failed", str(exc).splitlines()[0])
        result.elapsed_s = time.monotonic() - started
        report.steps.append(result)
        if on_step is not None:
            on_step(result)
    return report

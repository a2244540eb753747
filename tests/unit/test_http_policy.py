"""Token bucket, circuit breaker and retry policy, on a fake clock."""

from __future__ import annotations

import random

import pytest

from schemahub.errors import (
    CircuitOpen,
    ExchangeRejected,
    ExchangeUnavailable,
    RateLimited,
)
from schemahub.http.breaker import CircuitBreaker
from schemahub.http.client import parse_retry_after, redact_url
from schemahub.http.ratelimit import TokenBucket
from schemahub.http.retry import RetryPolicy
from tests.helpers import FakeClock

# -- token bucket ------------------------------------------------------------------------


def test_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, 5, clock=clock, sleep=clock.sleep)
    waits = [bucket.reserve() for _ in range(8)]
    assert waits[:5] == [0.0] * 5
    # reservations queue behind each other: 0.1 s apart at 10/s
    assert waits[5:] == pytest.approx([0.1, 0.2, 0.3])


def test_bucket_refills_over_time_but_not_beyond_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, 3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        bucket.reserve()
    clock.advance(60)
    assert [bucket.reserve() for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_bucket_sustains_exactly_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, 1, clock=clock, sleep=clock.sleep)
    start = clock()
    for _ in range(101):
        bucket.acquire()
    assert clock() - start == pytest.approx(10.0)  # 100 intervals of 0.1 s after the first token


def test_pause_stops_every_caller_then_restarts_from_empty() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, 5, clock=clock, sleep=clock.sleep)
    bucket.pause(2.0)
    assert bucket.reserve() == pytest.approx(2.1)
    assert bucket.reserve() == pytest.approx(2.2)


def test_server_side_take_refuses_when_empty() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, 2, clock=clock)
    assert [bucket.try_take() for _ in range(3)] == [True, True, False]
    clock.advance(0.1)
    assert bucket.try_take() and not bucket.try_take()


def test_unlimited_bucket_never_waits() -> None:
    bucket = TokenBucket(None, 1)
    assert all(bucket.reserve() == 0 for _ in range(1000))


def test_weighted_requests_take_their_weight() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, 300, clock=clock, sleep=clock.sleep)
    assert [bucket.reserve(25) for _ in range(12)] == [0.0] * 12  # 300 weight of burst
    assert bucket.reserve(25) == pytest.approx(0.25)  # then 25 weight at 100/s
    bucket.reconfigure(50.0, 100)
    assert bucket.reserve(25) == pytest.approx(1.0)  # the queued deficit (50) drains at the new 50/s


# -- circuit breaker -----------------------------------------------------------------------


def test_breaker_opens_after_consecutive_failures_only() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", failure_threshold=3, cooldown=1.0, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.on_failure("500")
    breaker.before_call()
    breaker.on_success()  # a success resets the count
    for _ in range(2):
        breaker.before_call()
        breaker.on_failure("500")
    assert breaker.state.value == "closed"
    breaker.before_call()
    breaker.on_failure("500")
    assert breaker.state.value == "open" and breaker.trips == 1
    with pytest.raises(CircuitOpen) as info:
        breaker.before_call()
    assert not info.value.dead and info.value.retry_in == pytest.approx(1.0)


def test_half_open_lets_one_probe_through_and_closes_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", failure_threshold=1, cooldown=1.0, clock=clock)
    breaker.on_failure("timeout")
    clock.advance(1.0)
    breaker.before_call()  # the probe
    assert breaker.state.value == "half-open"
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # only one probe at a time
    breaker.on_success()
    assert breaker.state.value == "closed"
    breaker.before_call()


def test_failed_probes_double_the_cooldown_then_declare_the_exchange_dead() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", failure_threshold=1, cooldown=1.0, max_failed_probes=3, clock=clock)
    breaker.on_failure("503")
    cooldowns = []
    for _ in range(2):
        with pytest.raises(CircuitOpen) as info:
            breaker.before_call()
        cooldowns.append(info.value.retry_in)
        clock.advance(info.value.retry_in)
        breaker.before_call()
        breaker.on_failure("503")
    assert cooldowns == pytest.approx([1.0, 2.0])
    clock.advance(4.0)
    breaker.before_call()
    breaker.on_failure("503")
    assert breaker.state.value == "dead"
    with pytest.raises(CircuitOpen, match="looks down") as info:
        breaker.before_call()
    assert info.value.dead


def test_neutral_outcomes_release_the_probe_without_judging() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", failure_threshold=1, cooldown=1.0, clock=clock)
    breaker.on_failure("503")
    clock.advance(1.0)
    breaker.before_call()
    breaker.on_neutral()  # e.g. the probe got a 429
    assert breaker.state.value == "half-open"
    breaker.before_call()  # another probe may go


# -- retry policy ------------------------------------------------------------------------


def _failing(errors: list[BaseException], result: str = "ok") -> tuple[list[int], object]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    return calls, fn


def test_retries_transient_errors_with_full_jitter_backoff() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=5, base=0.5, cap=4.0, rng=random.Random(1))
    errors: list[BaseException] = [ExchangeUnavailable("503", exchange="x") for _ in range(4)]
    calls, fn = _failing(errors)
    assert policy.call(fn, sleep=clock.sleep) == "ok"  # type: ignore[arg-type]
    assert len(calls) == 5
    ceilings = [0.5, 1.0, 2.0, 4.0]
    assert all(0 <= s <= c for s, c in zip(clock.slept, ceilings, strict=True))
    assert clock.slept[3] > 0.5  # the fourth ceiling really is 4 s (seed 1), not the first one


def test_backoff_ceiling_is_capped_and_jittered() -> None:
    policy = RetryPolicy(base=0.5, cap=4.0, rng=random.Random(3))
    delays = [policy.backoff(10, ExchangeUnavailable("503", exchange="x")) for _ in range(500)]
    assert max(delays) <= 4.0 and min(delays) >= 0
    assert max(delays) - min(delays) > 3  # spread over the whole window, not a fixed delay


def test_retry_after_is_honoured() -> None:
    policy = RetryPolicy(base=0.5, rng=random.Random(2))
    delay = policy.backoff(1, RateLimited("429", exchange="x", retry_after=7.0))
    assert 7.0 <= delay <= 7.5


def test_terminal_errors_are_not_retried() -> None:
    clock = FakeClock()
    calls, fn = _failing([ExchangeRejected("400", exchange="x")])
    with pytest.raises(ExchangeRejected):
        RetryPolicy().call(fn, sleep=clock.sleep)  # type: ignore[arg-type]
    assert len(calls) == 1 and clock.slept == []


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock = FakeClock()
    errors: list[BaseException] = [ExchangeUnavailable(f"503 #{i}", exchange="x") for i in range(10)]
    calls, fn = _failing(errors)
    with pytest.raises(ExchangeUnavailable, match="#2"):
        RetryPolicy(max_attempts=3).call(fn, sleep=clock.sleep)  # type: ignore[arg-type]
    assert len(calls) == 3


def test_waiting_for_an_open_circuit_does_not_use_up_attempts() -> None:
    clock = FakeClock()
    opened = [CircuitOpen("open", exchange="x", dead=False, retry_in=1.5) for _ in range(5)]
    calls, fn = _failing([*opened, ExchangeUnavailable("503", exchange="x")])
    assert RetryPolicy(max_attempts=2).call(fn, sleep=clock.sleep) == "ok"  # type: ignore[arg-type]
    assert clock.slept[:5] == [1.5] * 5 and len(calls) == 7


def test_a_dead_circuit_is_final() -> None:
    clock = FakeClock()
    calls, fn = _failing([CircuitOpen("dead", exchange="x", dead=True, retry_in=0)])
    with pytest.raises(CircuitOpen):
        RetryPolicy().call(fn, sleep=clock.sleep)  # type: ignore[arg-type]
    assert len(calls) == 1


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


def test_urls_are_redacted_before_logging() -> None:
    url = "https://user:pw@api.example.com/x?signature=abc&limit=5&X-Amz-Credential=AKIA&token=t"
    safe = redact_url(url)
    assert "pw" not in safe and "abc" not in safe and "AKIA" not in safe and "=t" not in safe
    assert "limit=5" in safe


def test_a_pause_cancels_reservations_made_before_it() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, 1, clock=clock)
    bucket.reserve()  # the only token goes to another thread
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # while we wait, someone is told 429
        slept.append(seconds)
        clock.advance(seconds)
        if len(slept) == 1:
            bucket.pause(5.0)

    bucket._sleep = sleep
    waited = bucket.acquire()
    assert slept[0] == pytest.approx(0.1) and sum(slept) == pytest.approx(waited)
    assert waited >= 5.0  # we queued again behind the pause instead of firing into it


@pytest.mark.parametrize(("rate", "expected"), [(None, 0.95 * 1200 / 60), (20.0, 20.0 * 25)])
def test_an_announced_weight_budget_replaces_the_default_rate_but_not_an_explicit_one(
        rate: float | None, expected: float) -> None:
    """``rate`` counts trade pages on every venue: on Binance, 20 historicalTrades pages/s is 500
    weight/s, and a budget the exchange announces later does not override it."""
    from schemahub.http.client import ExchangeClient
    from schemahub.ingest.connect import client_config
    from schemahub.settings import Settings
    from schemahub.sources.binance import Binance

    config = client_config(Settings.load("lake", env={}), Binance, rate=rate)
    with ExchangeClient("binance", config) as client:
        assert client.bucket.rate == (rate * 25 if rate else 0.95 * 6000 / 60)
        client.set_weight_budget(1200)  # what exchangeInfo.rateLimits announced (2021: 1200/min)
        assert client.bucket.rate == pytest.approx(expected)
        assert client.weight_per_minute == 1200  # the used-weight watch uses it either way

"""The one exponential back-off, and the three retries that follow it."""

from __future__ import annotations

from exporter.core.backoff import Backoff
from exporter.core.memory import DEFAULT_BACKOFF
from exporter.registry.backoff import RetryPolicy


def test_backoff_delays() -> None:
    backoff = Backoff(10, 100)
    assert [backoff.delay(n) for n in range(1, 7)] == [10, 20, 40, 80, 100, 100]
    assert backoff.delay(10_000) == 100


def test_before_any_failure_the_delay_is_the_base() -> None:
    assert Backoff(10, 100).delay(0) == Backoff(10, 100).delay(-3) == 10.0


def test_a_cap_off_the_doubling_ladder_is_reached_exactly() -> None:
    assert [Backoff(1.0, 60.0).delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_stuck_requests_repeat_after_a_minute_doubling_to_an_hour() -> None:
    assert [DEFAULT_BACKOFF.delay(n) for n in (1, 2, 7, 8)] == [60, 120, 3600, 3600]


def test_registry_retries_jitter_below_the_back_off_of_their_attempt() -> None:
    """Attempt 0 is the first retry: up to ``base_delay``, doubling up to ``max_delay``."""
    upper = RetryPolicy(rng=lambda: 1.0)
    assert [upper.backoff(a) for a in range(7)] == [0.25, 0.5, 1, 2, 4, 8, 8]
    assert RetryPolicy(rng=lambda: 0.5, base_delay=1, max_delay=3).backoff(5) == 1.5

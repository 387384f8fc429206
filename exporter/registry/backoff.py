"""How hard to push on a registry that is failing: retry delays and the auth-failure breaker.

Retries use exponential backoff (``exporter.core.backoff``) with full jitter (a fleet of
exporters restarted together must not retry in lock-step); a ``Retry-After`` header wins
but is capped, so one hostile answer cannot park a worker for hours. The breaker exists
because registries punish failed logins: GitLab.com bans an IP for 15 minutes after 300
failed authentications in a minute, so after a few auth failures we stop asking for a
cool-down period. Its keys are chosen by the session: (registry, credentials) for
credentials refused as such (a bad password at the token service, a password or registry
token the registry refuses), (registry, credentials, repository) for a repository those
credentials may not read, so one tenant's denied repositories never silence another's.
Clocks and randomness are injected.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from exporter.core.backoff import Backoff


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts after the first; delays in seconds. Without
    ``retry_rate_limited`` a 429 is final at once (its ``Retry-After`` goes to the caller)."""

    retries: int = 3
    retry_rate_limited: bool = True
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base * 2**attempt)] for attempt 0, 1, ..."""
        return self.rng() * Backoff(self.base_delay, self.max_delay).delay(attempt + 1)

    def after_429(self, retry_after: float | None, attempt: int) -> float:
        if retry_after is None:
            return self.backoff(attempt)
        return min(retry_after, self.max_retry_after)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date); None if unusable.

    ``now`` is Unix seconds (wall clock), needed only for the HTTP-date form.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


BreakerKey = tuple[str, ...]


class AuthBreaker:
    """Auth failures per key; a key opens after ``threshold`` failures within ``window``.

    While open, ``retry_in(key)`` returns the remaining cool-down and callers must not
    send anything. A success closes it and forgets the failures. At most ``max_keys`` keys
    are remembered (quiet ones are forgotten first).
    """

    def __init__(
        self,
        *,
        threshold: int = 5,
        window: float = 60.0,
        cooldown: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 65536,
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.cooldown = cooldown
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[BreakerKey, deque[float]] = {}
        self._open_until: dict[BreakerKey, float] = {}

    def retry_in(self, key: BreakerKey) -> float:
        """Seconds until requests may be sent again for ``key``; 0.0 when closed."""
        with self._lock:
            until = self._open_until.get(key)
            if until is None:
                return 0.0
            left = until - self._clock()
            if left > 0:
                return left
            del self._open_until[key]
            self._failures.pop(key, None)
            return 0.0

    def failure(self, key: BreakerKey) -> None:
        with self._lock:
            now = self._clock()
            if key not in self._failures and len(self._failures) >= self.max_keys:
                self._forget_quiet(now)
            failures = self._failures.setdefault(key, deque())
            failures.append(now)
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if len(failures) >= self.threshold:
                self._open_until[key] = now + self.cooldown

    def success(self, *keys: BreakerKey) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
                self._open_until.pop(key, None)

    def _forget_quiet(self, now: float) -> None:
        """Drop closed keys without a failure in the window; if none, the oldest closed one."""
        closed = [k for k in self._failures if k not in self._open_until]
        quiet = [
            k for k in closed if not self._failures[k] or self._failures[k][-1] <= now - self.window
        ]
        for key in quiet or closed[:1]:
            del self._failures[key]

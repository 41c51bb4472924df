"""Retries with exponential backoff and jitter, and a throttle that lowers the concurrency under 429s and the batch
size when a request's size is what failed (a timeout).

What is retried: 429, 502, 503, 504, timeouts and dropped connections, honouring `Retry-After`, within a bounded
total wait. A write is retried only when it cannot have been applied twice: the request never left (connect
errors), or the service refused it before doing anything (429, 503). When a write's outcome is unknown (the
connection dropped after sending, a 502/504 or a read timeout), the caller gets `ConnectorError.outcome_unknown`
and checks the remote state before writing again, so a retry never duplicates a record.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from connectors.errors import is_configuration_failure

RETRYABLE_STATUSES = {429, 502, 503, 504}
# Answers that mean "not processed": safe to resend even a non-idempotent write.
NOT_PROCESSED_STATUSES = {429, 503}
# Exceptions raised before the request reached the server.
NOT_SENT_EXCEPTIONS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# No answer in time after the request was sent: its size (the records it carries) may be the cause.
TOO_SLOW_EXCEPTIONS = (httpx.ReadTimeout, httpx.WriteTimeout)
RETRYABLE_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.5  # seconds; doubled on every attempt, with full jitter
    max_delay: float = 30.0
    max_total_wait: float = 120.0  # never wait longer than this for one call, Retry-After included

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter for the `attempt`-th retry (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


# A quick policy for the admin's "Test connection": say what is wrong within seconds.
QUICK_POLICY = RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=1.0, max_total_wait=3.0)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Read `Retry-After` as seconds (integer form, as both services send it, or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Throttle:
    """Additive-increase / multiplicative-decrease limits for concurrency and batch size.

    A 429 halves the concurrency only: the services throttle the number of requests and their combined time, which
    smaller batches do not lower (more requests of the same records), so shrinking them would only cost requests.
    A timeout halves the batch size, where the size of the request is the likely cause. Every `grow_after`
    successful calls adds one back to each (batch size: a tenth of the maximum), never above the connection's
    configured values, nor above the ceiling the service sets (Dataverse's `x-ms-dop-hint`, Business Central's 5
    requests per user).
    """

    def __init__(self, *, max_concurrency: int, max_batch_size: int, min_batch_size: int = 10, grow_after: int = 20):
        self.max_concurrency = max(1, max_concurrency)
        self.max_batch_size = max(1, max_batch_size)
        self.min_batch_size = max(1, min(min_batch_size, self.max_batch_size))
        self.concurrency = self.max_concurrency
        self.ceiling = self.max_concurrency
        self.batch_size = self.max_batch_size
        self.grow_after = grow_after
        self._successes = 0
        self._in_flight = 0
        self._condition = threading.Condition()

    def on_throttled(self) -> None:
        """A 429: fewer requests at once; the batches keep their size."""
        with self._condition:
            self.concurrency = max(1, self.concurrency // 2)
            self._successes = 0

    def on_too_slow(self) -> None:
        """A request timed out: smaller batches, so each request has less to do within the timeout."""
        with self._condition:
            self.batch_size = max(self.min_batch_size, self.batch_size // 2)
            self._successes = 0

    def on_success(self) -> None:
        with self._condition:
            self._successes += 1
            if self._successes >= self.grow_after:
                self._successes = 0
                self.concurrency = min(self.ceiling, self.concurrency + 1)
                step = max(1, self.max_batch_size // 10)
                self.batch_size = min(self.max_batch_size, self.batch_size + step)
                self._condition.notify_all()

    def set_ceiling(self, most: int) -> None:
        """What the service allows now, below the connection's maximum: the concurrency never goes above it."""
        with self._condition:
            self.ceiling = max(1, min(self.max_concurrency, most))
            # A higher ceiling is reached step by step, as after a 429.
            self.concurrency = min(self.concurrency, self.ceiling)
            self._condition.notify_all()

    def has_free_slot(self) -> bool:
        with self._condition:
            return self._in_flight < self.concurrency

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the currently allowed concurrent request slots."""
        with self._condition:
            while self._in_flight >= self.concurrency:
                self._condition.wait()
            self._in_flight += 1
        try:
            yield
        finally:
            with self._condition:
                self._in_flight -= 1
                self._condition.notify()


class ResponseTimes:
    """How long the recent answers of one kind of request took, for the timeout of the idempotent ones.

    A request that can be sent twice at no risk (a read, an upsert by our id) need not wait the connection's whole
    timeout (60 s by default) when its answers usually take a few seconds: it is cut short at FACTOR times the
    slowest recent answer (never below FLOOR seconds) and sent again, so a hung request holds its slot for seconds,
    not a minute. Each further attempt of the same call waits twice as long, and slower answers, once they come,
    raise the bar: a service that became slow for good still gets its requests through.
    """

    FACTOR = 4.0
    FLOOR = 5.0  # seconds
    KEEP = 20  # answers remembered
    NEEDED = 5  # answers seen before the timeout adapts at all

    def __init__(self) -> None:
        self._seconds: deque[float] = deque(maxlen=self.KEEP)
        self._lock = threading.Lock()

    def note(self, seconds: float) -> None:
        with self._lock:
            self._seconds.append(seconds)

    def timeout(self, attempt: int, configured: float) -> float | None:
        """The read timeout for the `attempt`-th try (1-based), or None to keep the connection's own."""
        with self._lock:
            if len(self._seconds) < self.NEEDED:
                return None
            slowest = max(self._seconds)
        seconds = max(self.FLOOR, self.FACTOR * slowest) * 2 ** (attempt - 1)
        return seconds if seconds < configured else None


@dataclass
class Attempt:
    """What one try produced: a response, or an exception raised before a response arrived."""

    response: httpx.Response | None = None
    exception: Exception | None = None


def should_retry(attempt: Attempt, *, idempotent: bool) -> bool:
    if attempt.exception is not None:
        if is_configuration_failure(attempt.exception):
            return False  # a wrong host name or certificate does not fix itself in a few seconds
        if isinstance(attempt.exception, NOT_SENT_EXCEPTIONS):
            return True
        return idempotent and isinstance(attempt.exception, RETRYABLE_EXCEPTIONS)
    assert attempt.response is not None  # an attempt has a response or an exception
    status = attempt.response.status_code
    if status not in RETRYABLE_STATUSES:
        return False
    return idempotent or status in NOT_PROCESSED_STATUSES


def outcome_unknown(attempt: Attempt, *, idempotent: bool) -> bool:
    """A non-idempotent write whose effect on the server we cannot know."""
    if idempotent:
        return False
    if attempt.exception is not None:
        return not isinstance(attempt.exception, NOT_SENT_EXCEPTIONS)
    assert attempt.response is not None  # an attempt has a response or an exception
    return attempt.response.status_code in (502, 504)


def delay_before_retry(attempt: Attempt, number: int, policy: RetryPolicy) -> float:
    """Honour Retry-After when the service sends it, else exponential backoff with jitter."""
    if attempt.response is not None:
        retry_after = retry_after_seconds(attempt.response)
        if retry_after is not None:
            return retry_after
    return policy.backoff(number)


SleepFunction = Callable[[float], None]
sleep: SleepFunction = time.sleep

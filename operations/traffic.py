"""Requests to the remote systems per connection and minute, counted in Redis, for the dashboard's traffic table.

`record` is the request observer the connectors call after every attempt of an API request (and on a token failure,
see `connectors/observers.py`); OperationsConfig.ready() registers it. Each call costs one pipelined round trip to
Redis: HINCRBY on the connection's hash of the current minute, and EXPIRE so that a minute is forgotten after two
hours. Nothing is kept per request, so the cost stays the same however busy the connection is.

Both services limit a user (our app registration) to 6,000 requests in a sliding 5-minute window: Business Central's
"OData request limits" and Dataverse's "Service protection API limits" (number of requests). `traffic_read` sums
the last five minute-buckets against that limit.

If Redis is unreachable the counts are lost, never the request: the failure is logged once, and recording is skipped
for a minute before it tries again, so a dead Redis costs no time per request.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

KEY_PREFIX = "syncadmin:traffic"
KEEP_SECONDS = 2 * 3600
WINDOW_MINUTES = 5
HOUR_MINUTES = 60
# Requests per user in a sliding 5-minute window, by Connection.kind; the same for both services today.
SERVICE_LIMITS = {"business_central": 6000, "dataverse": 6000}
RETRY_AFTER_FAILURE_SECONDS = 60
REDIS_TIMEOUT_SECONDS = 1.0

FIELDS = ("requests", "throttled", "retries", "token_failures")

_lock = threading.Lock()
_client: tuple[str, redis.Redis] | None = None  # (the URL it was made for, client)
_paused_until = 0.0  # after a Redis failure, skip recording until then
_failure_logged = False


def redis_client() -> redis.Redis:
    """The queues' Redis (RQ_QUEUES' default URL), one pool per process, remade if the URL changed (tests do).

    With short timeouts, unlike the queues' own connections: a request to a service never waits long for its count,
    a stuck Redis costs it a second at most, once a minute (recording pauses after a failure).
    """
    global _client
    url = str(settings.RQ_QUEUES["default"]["URL"])
    with _lock:
        if _client is None or _client[0] != url:
            timeout = REDIS_TIMEOUT_SECONDS
            client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            _client = (url, client)
            return client
        return _client[1]


def _key(connection_id: int, minute: int) -> str:
    return f"{KEY_PREFIX}:{connection_id}:{minute}"


def record(
    connection_id: int | None, service: str, kind: str, status: int | None, retried: bool, token_failure: bool
) -> None:
    """Count one request attempt (or token failure) of a connection in the current minute's bucket."""
    global _paused_until, _failure_logged
    if connection_id is None or time.monotonic() < _paused_until:
        return
    key = _key(connection_id, int(time.time() // 60))
    try:
        pipeline = redis_client().pipeline(transaction=False)
        if token_failure:
            pipeline.hincrby(key, "token_failures", 1)
        else:
            pipeline.hincrby(key, "requests", 1)
            if status == 429:
                pipeline.hincrby(key, "throttled", 1)
            if retried:
                pipeline.hincrby(key, "retries", 1)
        pipeline.expire(key, KEEP_SECONDS)
        pipeline.execute()
    except (redis.RedisError, OSError) as exc:
        _paused_until = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
        if not _failure_logged:
            _failure_logged = True
            logger.warning("Request counts are not recorded, Redis is unreachable (%s); requests go on", exc)


@dataclass(frozen=True)
class ConnectionTraffic:
    """One connection's requests: in the last 5 minutes against its service's limit, and in the last hour."""

    requests_in_window: int
    limit: int
    requests_last_hour: int
    throttled_last_hour: int
    retries_last_hour: int
    token_failures_last_hour: int

    @property
    def window_percent(self) -> int:
        return min(100, round(100 * self.requests_in_window / self.limit)) if self.limit else 0


def traffic_read(
    connections: list[tuple[int, str]], *, now: float | None = None
) -> dict[int, ConnectionTraffic] | None:
    """Counts for each (connection id, kind), from its last 60 minute-buckets in one round trip; None without Redis."""
    minute = int((now if now is not None else time.time()) // 60)
    minutes = range(minute - HOUR_MINUTES + 1, minute + 1)
    try:
        pipeline = redis_client().pipeline(transaction=False)
        for connection_id, _ in connections:
            for m in minutes:
                pipeline.hmget(_key(connection_id, m), FIELDS)
        answers = pipeline.execute()
    except (redis.RedisError, OSError) as exc:
        logger.warning("Request counts cannot be read, Redis is unreachable (%s)", exc)
        return None
    result = {}
    for position, (connection_id, kind) in enumerate(connections):
        buckets = answers[position * HOUR_MINUTES : (position + 1) * HOUR_MINUTES]
        hour = [[int(value or 0) for value in bucket] for bucket in buckets]
        window = hour[-WINDOW_MINUTES:]
        result[connection_id] = ConnectionTraffic(
            requests_in_window=sum(bucket[0] for bucket in window),
            limit=SERVICE_LIMITS.get(kind, 0),
            requests_last_hour=sum(bucket[0] for bucket in hour),
            throttled_last_hour=sum(bucket[1] for bucket in hour),
            retries_last_hour=sum(bucket[2] for bucket in hour),
            token_failures_last_hour=sum(bucket[3] for bucket in hour),
        )
    return result

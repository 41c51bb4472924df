"""Is this installation able to synchronize? The database, Redis and at least one live RQ worker.

For a load balancer or an uptime monitor: each check says only "ok" or "failing" (the reason goes to the log).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import django_rq
from django.db import connection
from django.utils import timezone
from rq import Worker

logger = logging.getLogger(__name__)

# An idle RQ worker refreshes its heartbeat at least once per worker TTL (420 s by default); a margin on top.
WORKER_HEARTBEAT_MAX_AGE = timedelta(seconds=480)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_redis() -> None:
    django_rq.get_connection("default").ping()


def check_worker() -> None:
    workers = Worker.all(connection=django_rq.get_connection("default"))
    oldest_allowed = timezone.now() - WORKER_HEARTBEAT_MAX_AGE
    if not any(worker.last_heartbeat and worker.last_heartbeat >= oldest_allowed for worker in workers):
        raise RuntimeError(f"no RQ worker has sent a heartbeat since {oldest_allowed:%H:%M:%S} UTC")


CHECKS = {"database": check_database, "redis": check_redis, "worker": check_worker}


def health_checks() -> dict[str, bool]:
    """Run every check; True where it passed."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:
            logger.warning("Health check %s failing: %s", name, exc)
            results[name] = False
        else:
            results[name] = True
    return results

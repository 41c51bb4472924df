"""Telling a run whose worker died from a run that is merely slow.

A running job renews a heartbeat key in Redis from a thread of its own, every third of SYNC_WORKER_LOST_AFTER_SECONDS,
whatever its pages do (a page can take minutes). The key expires SYNC_WORKER_LOST_AFTER_SECONDS after the last
renewal, so a worker killed with SIGKILL, a work horse killed alone, a machine that lost power: each leaves a running
job without a heartbeat within that time, whatever RQ worker class ran it. RQ's own heartbeats do not serve here: a
SimpleWorker sends none while it runs a job, and RQ moves an abandoned job to its failed registry only when its
registry entry expires (hours later for a six-hour job timeout), without retrying it.

`jobs.services.sync_runs_recover` (called by the scheduler's tick) fails such runs, frees their lock and resumes them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

import django_rq
from django.conf import settings

logger = logging.getLogger(__name__)

QUEUE = "default"

# Delete the key only if it still holds this token: a lock another run has taken since is left alone.
RELEASE_IF_HELD_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def heartbeat_key(job_id: int) -> str:
    return f"syncadmin:run-heartbeat:{job_id}"


class RunHeartbeat:
    """While entered, job `job_id`'s heartbeat key exists; it lapses soon after the process stops."""

    def __init__(self, job_id: int, connection=None):
        self.redis = connection or django_rq.get_connection(QUEUE)
        self.key = heartbeat_key(job_id)
        self.ttl = settings.SYNC_WORKER_LOST_AFTER_SECONDS
        # Who beats, for a person looking at Redis: host and process id.
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> RunHeartbeat:
        self._renew()  # before the job shows as running, so the tick never sees it running without a heartbeat
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.redis.delete(self.key)

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._renew()
            except Exception:  # a Redis hiccup: the next beat tries again; two missed in a row and the run is lost
                logger.warning("Could not renew the heartbeat %s", self.key, exc_info=True)

    def _renew(self) -> None:
        self.redis.set(self.key, self.holder, ex=self.ttl)


def without_heartbeat(job_ids: list[int], connection=None) -> list[int]:
    """The jobs among `job_ids` whose heartbeat has lapsed: their worker stopped."""
    if not job_ids:
        return []
    redis = connection or django_rq.get_connection(QUEUE)
    pipe = redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.exists(heartbeat_key(job_id))
    return [job_id for job_id, alive in zip(job_ids, pipe.execute(), strict=True) if not alive]


def release_if_held(key: str, token: str, connection=None) -> bool:
    """Delete the lock `key` if `token` (its dead holder's) still holds it; True if it did."""
    if not token:
        return False
    redis = connection or django_rq.get_connection(QUEUE)
    return bool(redis.eval(RELEASE_IF_HELD_SCRIPT, 1, key, token))

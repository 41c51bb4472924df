"""A full synchronization shared by several workers: one reads, everyone writes.

The job that holds the mapping's lock (the coordinator) reads the source page by page and puts each page in Redis;
helper RQ jobs on any worker, on any machine, take pages and process them with the same page pipeline. The
coordinator processes pages too, so with a single worker the run simply goes on alone. Pages are disjoint sets of
source records, and couplings are unique per record, so no record is synchronized twice.

A page a helper took but never finished (its worker died) is put back once its claim is older than
CLAIM_TIMEOUT_SECONDS, and processed again: safe, because inserts upsert by the id reserved in a pending coupling.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import django_rq
from django.conf import settings

# A page is processed well within this; a claim older than it belonged to a worker that died.
CLAIM_TIMEOUT_SECONDS = 900
IDLE_HELPER_EXIT_SECONDS = 15
POLL_SECONDS = 0.1
KEY_TTL_SECONDS = 24 * 3600


# Pop the next page id and record its claim time atomically (a worker dying in between loses nothing).
CLAIM_SCRIPT = """
local page = redis.call('LPOP', KEYS[1])
if page then
  redis.call('HSET', KEYS[2], page, ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return page
"""


class SharedPages:
    """The pages of one full synchronization job, in Redis."""

    def __init__(self, job_id: int, connection=None):
        self.redis = connection or django_rq.get_connection("default")
        prefix = f"syncadmin:shared-sync:{job_id}"
        self.queue_key = f"{prefix}:queue"
        self.claims_key = f"{prefix}:claims"
        self.reading_done_key = f"{prefix}:reading-done"
        self.page_prefix = f"{prefix}:page:"

    def push(self, rows: list[dict]) -> str:
        page_id = uuid.uuid4().hex
        pipe = self.redis.pipeline()
        pipe.set(self.page_prefix + page_id, json.dumps(rows, default=str), ex=KEY_TTL_SECONDS)
        pipe.rpush(self.queue_key, page_id)
        pipe.expire(self.queue_key, KEY_TTL_SECONDS)
        pipe.execute()
        return page_id

    def claim(self) -> tuple[str, list[dict]] | None:
        """Take the next page: moved from the queue to the claims in one step, so it is never in neither."""
        page_id = self.redis.eval(CLAIM_SCRIPT, 2, self.queue_key, self.claims_key, time.time(), KEY_TTL_SECONDS)
        if page_id is None:
            return None
        page_id = page_id.decode()
        raw = self.redis.get(self.page_prefix + page_id)
        return page_id, (json.loads(raw) if raw else [])

    def finish(self, page_id: str) -> None:
        pipe = self.redis.pipeline()
        pipe.hdel(self.claims_key, page_id)
        pipe.delete(self.page_prefix + page_id)
        pipe.execute()

    def release(self, page_id: str) -> None:
        """Put a claimed page back (its processing was interrupted)."""
        pipe = self.redis.pipeline()
        pipe.hdel(self.claims_key, page_id)
        pipe.lpush(self.queue_key, page_id)
        pipe.execute()

    def requeue_stale_claims(self, older_than: float = CLAIM_TIMEOUT_SECONDS) -> int:
        now = time.time()
        stale = [
            page_id.decode() if isinstance(page_id, bytes) else page_id
            for page_id, claimed_at in self.redis.hgetall(self.claims_key).items()
            if now - float(claimed_at) > older_than
        ]
        for page_id in stale:
            self.release(page_id)
        return len(stale)

    def mark_reading_done(self) -> None:
        self.redis.set(self.reading_done_key, 1, ex=KEY_TTL_SECONDS)

    def reading_done(self) -> bool:
        return bool(self.redis.exists(self.reading_done_key))

    def outstanding(self) -> int:
        pipe = self.redis.pipeline()  # MULTI/EXEC: both lengths from one moment
        pipe.llen(self.queue_key)
        pipe.hlen(self.claims_key)
        return sum(pipe.execute())

    def discard(self) -> None:
        keys = [self.queue_key, self.claims_key, self.reading_done_key]
        keys += list(self.redis.scan_iter(f"{self.page_prefix}*"))
        self.redis.delete(*keys)


def helper_count() -> int:
    return getattr(settings, "SYNC_SHARED_FULL_SYNC_HELPERS", 3)


def coordinate(run, job_id: int, enqueue_helpers) -> None:
    """Read every source page into the shared queue, and process pages until none is left anywhere."""
    pages = SharedPages(job_id)
    pages.discard()
    helpers_started = False
    mine: set[str] = set()  # pages this worker took whose results are not all saved yet
    try:
        with _writing(run, pages, mine):
            for rows in run.source_pages():
                if not rows:
                    continue
                pages.push(rows)
                run.on_page()  # renew the mapping's lock and see a cancellation while only reading
                if not helpers_started:
                    enqueue_helpers(helper_count())
                    helpers_started = True
                # Take a page now and then, so the coordinator works as fast as it reads when it is alone.
                if pages.redis.llen(pages.queue_key) > 2:
                    _process_one(pages, run, mine)
            pages.mark_reading_done()
            while pages.outstanding():
                if not _process_one(pages, run, mine):
                    run.settle()  # this worker's own pages in flight end and are finished
                    if not pages.outstanding():
                        break
                    run.on_page()  # keep the mapping's lock alive while helpers finish their pages
                    run.check_cancelled()
                    pages.requeue_stale_claims()
                    time.sleep(POLL_SECONDS)
    finally:
        pages.discard()


def help_with(run, job_id: int) -> int:
    """Process pages of a shared run until the coordinator has read everything and the queue is empty.

    Returns how many pages this helper processed.
    """
    pages = SharedPages(job_id)
    processed = 0
    idle_since = time.monotonic()
    mine: set[str] = set()
    with _writing(run, pages, mine):
        while True:
            if _process_one(pages, run, mine):
                processed += 1
                idle_since = time.monotonic()
                continue
            run.settle()  # nothing to take: finish this worker's pages before waiting or leaving
            if pages.reading_done() or time.monotonic() - idle_since > IDLE_HELPER_EXIT_SECONDS:
                return processed
            time.sleep(POLL_SECONDS)


@contextmanager
def _writing(run, pages: SharedPages, mine: set[str]) -> Iterator[None]:
    """The run's writes end and are saved on the way out; the pages taken whose results are not all saved go
    back to the queue, for another worker."""
    try:
        with run.writing():
            yield
    finally:
        for page_id in list(mine):
            pages.release(page_id)


def _process_one(pages: SharedPages, run, mine: set[str]) -> bool:
    claimed = pages.claim()
    if claimed is None:
        return False
    page_id, rows = claimed
    mine.add(page_id)

    def saved() -> None:  # called on this thread once the page's results are all saved
        mine.discard(page_id)
        pages.finish(page_id)

    run.process_page(rows, on_saved=saved)
    return True

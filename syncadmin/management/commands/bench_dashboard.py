"""Time the admin's start page (the dashboard) with 30 days of jobs and 100,000 errors, and print the figures.

By default it runs in a throw-away data folder (its own SQLite database, migrated first, with the five default
mappings); `--in-place` measures the configured database instead (PostgreSQL in CI), adding its rows to the mappings
there and removing them afterwards. The data: one run per mapping per minute for 30 days (about 216,000 sync jobs
over five mappings, alternating directions, some failed), 100,000 sync errors spread over the same days, two running
jobs. The page is rendered completely (queries, template) through the admin's own view for /admin/, as a logged-in
superuser's browser would get it, for each chart range. The first rendering of a range finds no hour of its charts
kept in Redis yet (operations/dashboard_hours.py) and is printed apart; then the median and maximum of several
renderings, with the SQL queries per page. In its throw-away folder it starts an embedded Redis, as `make run` does.
"""

import statistics
import time
import uuid
from contextlib import contextmanager, nullcontext
from datetime import timedelta

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import resolve
from django.utils import timezone

from jobs.choices import ErrorClass, JobKind, JobStatus
from jobs.models import SyncError, SyncJob
from mappings.choices import Direction
from mappings.models import TableMapping
from operations import dashboard_hours
from operations.traffic import redis_client
from syncadmin.management import embedded_redis
from syncadmin.management.scratch import is_scratch_child, rerun_in_scratch_folder

CHILD_ENV = "SYNCADMIN_BENCH_DASHBOARD_CHILD"
BATCH = 5_000
TARGET_SECONDS = 0.3
BENCH_MARK = "bench_dashboard"  # the message of every job this command creates, to remove them with --in-place


@contextmanager
def _timestamps_as_given(*fields):
    """Let bulk_create keep the times we give `auto_now_add` fields: the rows stand for 30 days of history."""
    for model_field in fields:
        model_field.auto_now_add = False
    try:
        yield
    finally:
        for model_field in fields:
            model_field.auto_now_add = True


class Command(BaseCommand):
    help = "Time the admin's start page with 30 days of jobs (one run per mapping per minute) and 100,000 errors."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=30, help="Days of history, one job per mapping per minute.")
        parser.add_argument("--errors", type=int, default=100_000, help="Sync errors to create.")
        parser.add_argument("--repeat", type=int, default=7, help="Renderings per page; the median is printed.")
        parser.add_argument(
            "--in-place", action="store_true", help="Use the configured database (rows are removed afterwards)."
        )

    def handle(self, *args, **options):
        if not options["in_place"] and not is_scratch_child(CHILD_ENV):
            prefix = "syncadmin-bench-dashboard-"
            raise SystemExit(rerun_in_scratch_folder(marker=CHILD_ENV, prefix=prefix, env={"DEBUG": "1"}))
        child = is_scratch_child(CHILD_ENV)
        if child:
            call_command("migrate", verbosity=0)
        redis_server = embedded_redis.running(socket_path=settings.EMBEDDED_REDIS_SOCKET, data_dir=settings.DATA_DIR)
        with redis_server if child else nullcontext():
            self._run(options)

    def _run(self, options):
        mappings = list(TableMapping.objects.order_by("name"))
        if not mappings:
            self.stderr.write("No table mappings: run migrate (it creates the default mappings) first.")
            raise SystemExit(1)
        self.stdout.write(
            f"Database: {connection.vendor}. Creating {options['days']} days of jobs for {len(mappings)} mappings "
            f"and {options['errors']:,} errors..."
        )
        try:
            self._forget_kept_hours()
            self._fill(mappings, options["days"], options["errors"])
            self._measure(options["repeat"])
        finally:
            if options["in_place"]:
                SyncJob.objects.filter(message=BENCH_MARK).delete()  # their errors go with them
                self._forget_kept_hours()

    def _forget_kept_hours(self):
        """The charts' kept hours would not show the rows this command adds, nor forget them once it removed them."""
        connection = redis_client()
        try:
            for key in connection.scan_iter(f"{dashboard_hours.KEY_PREFIX}:*", count=1000):
                connection.delete(key)
        except redis.RedisError:
            self.stdout.write("No Redis: every rendering reads the charts' hours from the database.")

    def _fill(self, mappings: list[TableMapping], days: int, error_count: int) -> None:
        started = time.perf_counter()
        now = timezone.now().replace(second=0, microsecond=0)
        minutes = days * 24 * 60
        directions = [Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE]
        classes = list(ErrorClass.values)
        job_ids: list[int] = []
        with (
            transaction.atomic(),
            _timestamps_as_given(SyncJob._meta.get_field("queued_at"), SyncError._meta.get_field("created_at")),
        ):
            batch: list[SyncJob] = []
            for minute in range(minutes, 0, -1):
                at = now - timedelta(minutes=minute)
                for position, mapping in enumerate(mappings):
                    n = minute * len(mappings) + position
                    status = (
                        JobStatus.FAILED
                        if n % 97 == 0
                        else JobStatus.PARTLY_FAILED
                        if n % 13 == 0
                        else (JobStatus.SUCCEEDED)
                    )
                    batch.append(
                        SyncJob(
                            kind=JobKind.MODIFIED,
                            table_mapping=mapping,
                            direction=directions[minute % 2],
                            status=status,
                            queued_at=at,
                            started_at=at + timedelta(seconds=1),
                            finished_at=at + timedelta(seconds=2 + n % 20),
                            inserted=n % 3,
                            modified=n % 7,
                            unchanged=n % 40,
                            failed=1 if status != JobStatus.SUCCEEDED else 0,
                            progress_done=n % 50,
                            message=BENCH_MARK,
                        )
                    )
                if len(batch) >= BATCH:
                    job_ids.extend(job.pk for job in SyncJob.objects.bulk_create(batch))
                    batch = []
            if batch:
                job_ids.extend(job.pk for job in SyncJob.objects.bulk_create(batch))
            for mapping in mappings[:2]:  # two runs under way, for the running-jobs table
                SyncJob.objects.create(
                    table_mapping=mapping,
                    direction=Direction.TO_DATAVERSE,
                    status=JobStatus.RUNNING,
                    queued_at=now,
                    started_at=now - timedelta(minutes=3),
                    progress_done=1200,
                    progress_total=5000,
                    message=BENCH_MARK,
                )
            for start in range(0, error_count, BATCH):
                rows = []
                for i in range(start, min(error_count, start + BATCH)):
                    # Spread over the days, on the job of that minute (job_ids are in time order).
                    job_index = (i * len(job_ids)) // error_count
                    mapping = mappings[job_index % len(mappings)]
                    rows.append(
                        SyncError(
                            job_id=job_ids[job_index],
                            table_mapping_id=mapping.pk,
                            direction=Direction.TO_DATAVERSE,
                            bc_id=uuid.uuid4(),
                            bc_name=f"Customer {i:06d}",
                            error_class=classes[i % len(classes)],
                            message=f"Creating the Dataverse record failed: value {i} is too long for name.",
                            created_at=now - timedelta(minutes=minutes * (error_count - i) / error_count),
                        )
                    )
                SyncError.objects.bulk_create(rows)
            TableMapping.objects.filter(pk__in=[m.pk for m in mappings]).update(
                bc_watermark=now - timedelta(minutes=2), dataverse_watermark=now - timedelta(minutes=1)
            )
        self.stdout.write(
            f"  {len(job_ids):,} jobs and {error_count:,} errors filled in {time.perf_counter() - started:.1f} s"
        )

    def _measure(self, repeat: int) -> None:
        user = get_user_model()(username="bench", is_staff=True, is_superuser=True, is_active=True)
        view = resolve("/admin/").func
        factory = RequestFactory()
        worst = 0.0
        self.stdout.write(
            f"{'page':36} {'first ms':>9} {'queries':>8} {'then: median ms':>16} {'max ms':>7} {'queries':>8}"
        )
        for label, query in [
            ("start page (charts over 24 hours)", ""),
            ("start page, charts over 7 days", "range=7d"),
            ("start page, charts over 30 days", "range=30d"),
        ]:
            timings, queries = [], []
            for _ in range(repeat + 1):
                request = factory.get("/admin/?" + query)
                request.user = user
                request.session = {}  # type: ignore[assignment]  # the page reads no session: a dict will do
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = view(request)
                    response.render()
                    timings.append(time.perf_counter() - started)
                assert response.status_code == 200, (label, response.status_code)
                queries.append(len(captured.captured_queries))
            first, then = timings[0], timings[1:]
            median = statistics.median(then)
            worst = max(worst, median)
            self.stdout.write(
                f"{label:36} {first * 1000:9.0f} {queries[0]:8d} {median * 1000:16.0f} {max(then) * 1000:7.0f} "
                f"{queries[-1]:8d}"
            )
        verdict = "OK" if worst < TARGET_SECONDS else "TOO SLOW"
        self.stdout.write(
            f"Slowest page (median): {worst * 1000:.0f} ms; target {TARGET_SECONDS * 1000:.0f} ms: {verdict}"
        )

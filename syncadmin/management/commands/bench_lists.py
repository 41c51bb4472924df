"""Time the coupling and sync error lists of the admin with 100,000 rows each, and print the figures.

By default it runs in a throw-away data folder (its own SQLite database, migrated first); `--in-place` measures the
configured database instead (PostgreSQL in CI), adding its rows under a BENCH mapping and removing them afterwards.
Each list is rendered completely (query, filters, template) through the admin's own views, as a browser would get
it, and timed as the median of several renderings; the number of SQL queries per page is printed too.
"""

import statistics
import time
import uuid
from datetime import timedelta

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from coupling.choices import SyncResult
from coupling.models import Coupling
from jobs.choices import ErrorClass, JobKind, JobStatus
from jobs.models import SyncError, SyncJob
from mappings.choices import Direction
from mappings.models import TableMapping
from syncadmin.management.scratch import is_scratch_child, rerun_in_scratch_folder

CHILD_ENV = "SYNCADMIN_BENCH_LISTS_CHILD"
BENCH_MAPPING = "BENCH"
BATCH = 5_000
TARGET_SECONDS = 0.5


class Command(BaseCommand):
    help = "Time the coupling and sync error admin lists with 100,000 couplings and 100,000 errors."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=100_000, help="Couplings and errors to create (each).")
        parser.add_argument("--repeat", type=int, default=5, help="Renderings per page; the median is printed.")
        parser.add_argument(
            "--in-place", action="store_true", help="Use the configured database (rows are removed afterwards)."
        )

    def handle(self, *args, **options):
        if not options["in_place"] and not is_scratch_child(CHILD_ENV):
            raise SystemExit(
                rerun_in_scratch_folder(marker=CHILD_ENV, prefix="syncadmin-bench-lists-", env={"DEBUG": "1"})
            )
        if is_scratch_child(CHILD_ENV):
            call_command("migrate", verbosity=0)
        self.stdout.write(f"Database: {connection.vendor}. Creating {options['rows']:,} couplings and errors...")
        mapping = self._fill(options["rows"])
        try:
            self._measure(mapping, options["repeat"])
        finally:
            if options["in_place"]:
                TableMapping.objects.filter(pk=mapping.pk).delete()

    def _fill(self, rows: int) -> TableMapping:
        TableMapping.objects.filter(name=BENCH_MAPPING).delete()
        started = time.perf_counter()
        with transaction.atomic():
            mapping = TableMapping.objects.create(
                name=BENCH_MAPPING,
                bc_entity_set="customers",
                dataverse_entity_set="accounts",
                dataverse_primary_key="accountid",
            )
            job = SyncJob.objects.create(
                kind=JobKind.MODIFIED, table_mapping=mapping, direction=Direction.TO_DATAVERSE, status=JobStatus.FAILED
            )
            results = [SyncResult.SUCCESS, SyncResult.SUCCESS, SyncResult.FAILURE, SyncResult.NONE]
            classes = list(ErrorClass.values)
            now = timezone.now()
            for start in range(0, rows, BATCH):
                stop = min(rows, start + BATCH)
                Coupling.objects.bulk_create(
                    [
                        Coupling(
                            table_mapping=mapping,
                            bc_id=uuid.uuid4(),
                            dataverse_id=uuid.uuid4(),
                            bc_name=f"Customer {i:06d}",
                            dataverse_name=f"Account {i:06d}",
                            last_result_to_dataverse=results[i % 4],
                            last_result_from_dataverse=results[(i + 1) % 4],
                            skipped=i % 50 == 0,
                        )
                        for i in range(start, stop)
                    ]
                )
                errors = SyncError.objects.bulk_create(
                    [
                        SyncError(
                            job=job,
                            table_mapping=mapping,
                            direction=Direction.TO_DATAVERSE,
                            bc_id=uuid.uuid4(),
                            bc_name=f"Customer {i:06d}",
                            error_class=classes[i % len(classes)],
                            message=f"Creating the Dataverse record failed: value {i} is too long for name.",
                        )
                        for i in range(start, stop)
                    ]
                )
                # Spread the errors over 100 days, so date-range filters have something to narrow.
                SyncError.objects.filter(pk__in=[e.pk for e in errors]).update(
                    created_at=now - timedelta(days=start // 1000)
                )
        self.stdout.write(f"  filled in {time.perf_counter() - started:.1f} s")
        return mapping

    def _measure(self, mapping: TableMapping, repeat: int) -> None:
        user = get_user_model()(username="bench", is_staff=True, is_superuser=True, is_active=True)
        today = timezone.localdate()
        some_bc_id = Coupling.objects.filter(table_mapping=mapping).values_list("bc_id", flat=True).first()
        job_id = SyncJob.objects.filter(table_mapping=mapping).values_list("pk", flat=True).first()
        pages = [
            ("couplings", Coupling, ""),
            ("couplings, page 100", Coupling, "p=100"),
            ("couplings of the mapping, skipped", Coupling, f"table_mapping={mapping.pk}&skipped=true"),
            ("couplings, last result to Dataverse = failure", Coupling, "to_dataverse=failure"),
            ("couplings, search by name", Coupling, "text=Customer+04217"),
            (
                "couplings, search by id",
                Coupling,
                f"text={some_bc_id}",
            ),
            ("errors", SyncError, ""),
            ("errors, page 100", SyncError, "p=100"),
            ("errors of class validation", SyncError, "error_class=validation"),
            (
                "errors of the mapping and job, to Dataverse",
                SyncError,
                f"table_mapping={mapping.pk}&job={job_id}&direction=to_dataverse",
            ),
            (
                "errors in a date range",
                SyncError,
                f"since={today - timedelta(days=30)}&until={today - timedelta(days=20)}",
            ),
            ("errors, text search", SyncError, "text=too+long"),
        ]
        factory = RequestFactory()
        worst = 0.0
        self.stdout.write(f"{'page':55} {'median ms':>10} {'max ms':>8} {'queries':>8} {'rows shown':>10}")
        for label, model, query in pages:
            model_admin = admin.site._registry[model]
            timings, queries, shown = [], 0, 0
            for _ in range(repeat):
                request = factory.get("/admin/x/?" + query)
                request.user = user
                request._messages = []  # the lists send no message on GET
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = model_admin.changelist_view(request)
                    if response.status_code != 200:
                        raise SystemExit(f"{label}: answered {response.status_code} {response.get('Location', '')}")
                    response.render()
                    timings.append(time.perf_counter() - started)
                assert response.status_code == 200, (label, response.status_code)
                queries = len(captured.captured_queries)
                shown = len(response.context_data["cl"].result_list)
            median = statistics.median(timings)
            worst = max(worst, median)
            self.stdout.write(f"{label:55} {median * 1000:10.0f} {max(timings) * 1000:8.0f} {queries:8d} {shown:10d}")
        verdict = "OK" if worst < TARGET_SECONDS else "TOO SLOW"
        self.stdout.write(
            f"Slowest page (median): {worst * 1000:.0f} ms; target {TARGET_SECONDS * 1000:.0f} ms: {verdict}"
        )

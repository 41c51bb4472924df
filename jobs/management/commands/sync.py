"""Run a sync from the command line, through the same services as the admin and the scheduler (jobs.services)."""

import uuid

import django_rq
import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from connectors.odata import as_uuid
from jobs.choices import JobKind, RequestedVia
from jobs.models import SyncJob
from jobs.services import mappings_in_dependency_order, sync_jobs_create_in_order, sync_jobs_enqueue, sync_jobs_run
from mappings.choices import Direction
from mappings.models import TableMapping


class Command(BaseCommand):
    help = "Synchronize table mappings: modified records (default), a full synchronization, or selected records."

    def add_arguments(self, parser):
        parser.add_argument("mappings", nargs="*", help="Mapping names (default: all, in dependency order).")
        parser.add_argument(
            "--kind", choices=[JobKind.MODIFIED, JobKind.FULL, JobKind.RECORDS], default=JobKind.MODIFIED
        )
        parser.add_argument("--direction", choices=[Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE])
        parser.add_argument("--record", action="append", default=[], help="Source record id (with --kind records).")
        parser.add_argument("--preview", action="store_true", help="Plan only: show what would change, write nothing.")
        parser.add_argument("--enqueue", action="store_true", help="Queue for the RQ workers instead of running here.")

    def handle(self, *args, **options):
        try:
            self._handle(**options)
        except redis.exceptions.ConnectionError as exc:
            # The run lock (and --enqueue) need Redis: say which one and how to get it, not a traceback.
            raise CommandError(
                f"Redis is not reachable at {settings.REDIS_URL} ({exc}). Start syncadmin with `make run` (it "
                "starts the embedded Redis) or point REDIS_URL at a running Redis."
            ) from exc

    def _handle(self, **options):
        mappings = self._mappings(options["mappings"])
        self._check_records(options["kind"], options["record"])
        django_rq.get_connection("default").ping()  # before any job row exists, so none is left queued for ever
        # As the admin action does: modified records of named mappings run after the mappings they depend on.
        with transaction.atomic():
            jobs, refused = sync_jobs_create_in_order(
                mappings=mappings,
                kind=options["kind"],
                direction=options["direction"],
                record_ids=options["record"] or None,
                dry_run=options["preview"],
                with_dependencies=bool(options["mappings"]) and options["kind"] == JobKind.MODIFIED,
                via=RequestedVia.COMMAND,
            )
            if options["enqueue"]:
                sync_jobs_enqueue(jobs)
        for name, reason in refused.items():
            self.stderr.write(f"{name}: {reason}")
        if options["enqueue"]:
            self.stdout.write(f"Queued sync jobs {', '.join(f'#{j.pk}' for j in jobs)}.")
            return
        bars = {}

        def progress(job: SyncJob):
            job.refresh_from_db(fields=["progress_done"])
            bar = bars.setdefault(job.pk, tqdm(desc=str(job), unit=" records", file=self.stderr))
            bar.update(job.progress_done - bar.n)

        # Wait out the lock of a worker that died mid-run, rather than giving up at once.
        sync_jobs_run(
            job_ids=[j.pk for j in jobs], on_progress=progress, lock_wait=settings.SYNC_LOCK_TIMEOUT_SECONDS + 1
        )
        for bar in bars.values():
            bar.close()
        failed = False
        for job in SyncJob.objects.filter(pk__in=[j.pk for j in jobs]).order_by("pk"):
            # A preview writes nothing, so its own counters stay zero: show what it would do instead.
            shown = job.preview_counts if job.dry_run else job.counts.items()
            counts = ", ".join(f"{k.lower()} {v}" for k, v in shown if v)
            self.stdout.write(f"#{job.pk} {job.table_mapping.name} {job.direction}: {job.get_status_display()}")
            self.stdout.write(f"    {counts or 'nothing to do'}; {job.http_requests} HTTP requests. {job.message}")
            for item in job.preview.get("sample", [])[:20] if job.dry_run else []:
                for diff in item["diffs"]:
                    self.stdout.write(
                        f"    {item['action']} {item['record']}: {diff['field']} {diff['old']!r} -> {diff['new']!r}"
                    )
            failed |= job.status in ("failed",)
        if failed:
            raise CommandError("At least one sync job failed.")

    @staticmethod
    def _check_records(kind: str, records: list[str]) -> None:
        """Refuse before any job exists: a records run needs records, and record ids are GUIDs on both systems."""
        if kind == JobKind.RECORDS and not records:
            raise CommandError("--kind records needs the records: give each source record's id with --record ID.")
        if records and kind != JobKind.RECORDS:
            raise CommandError("--record selects records of a --kind records run only.")
        not_ids = [record for record in records if as_uuid(record) is None]
        if not_ids:
            raise CommandError(f"Not a record id (a GUID such as {uuid.UUID(int=0)}): {', '.join(not_ids)}.")

    def _mappings(self, names: list[str]) -> list[TableMapping]:
        if not names:
            return mappings_in_dependency_order()
        found = {m.name: m for m in TableMapping.objects.filter(name__in=[n.upper() for n in names])}
        missing = [n for n in names if n.upper() not in found]
        if missing:
            known = ", ".join(TableMapping.objects.values_list("name", flat=True))
            raise CommandError(f"Unknown mapping(s): {', '.join(missing)}. Known: {known}.")
        return [m for m in mappings_in_dependency_order() if m.name in found]

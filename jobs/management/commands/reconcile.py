"""Reconcile table mappings from the command line, through the same service as the admin and the schedule."""

from django.core.management.base import BaseCommand, CommandError

from jobs.choices import JobStatus
from jobs.models import Reconciliation
from jobs.reconciliation.services import reconciliation_enqueue, reconciliation_run
from mappings.models import TableMapping

LABELS = [
    ("bc_records", "Business Central records under the filter"),
    ("dataverse_records", "Dataverse rows under the filter"),
    ("coupled", "coupled pairs"),
    ("orphans_bc_gone", "couplings whose Business Central record is gone"),
    ("orphans_dataverse_gone", "couplings whose Dataverse row is gone"),
    ("orphans_both_gone", "couplings whose records are gone on both sides"),
    ("uncoupled_bc", "uncoupled Business Central records"),
    ("uncoupled_bc_with_match", "  of which with a match-field partner"),
    ("uncoupled_dataverse", "uncoupled Dataverse rows"),
    ("uncoupled_dataverse_with_match", "  of which with a match-field partner"),
    ("drift_checked", "unchanged coupled pairs compared (sample)"),
    ("drift", "  of which drifted (mapped fields differ)"),
]


class Command(BaseCommand):
    help = "Reconcile table mappings: count records, couplings, orphans, uncoupled records and drift."

    def add_arguments(self, parser):
        parser.add_argument("mappings", nargs="*", help="Mapping names (default: all).")
        parser.add_argument("--enqueue", action="store_true", help="Queue for the RQ workers instead of running here.")

    def handle(self, *args, **options):
        names = options["mappings"]
        mappings = list(TableMapping.objects.filter(name__in=names) if names else TableMapping.objects.all())
        unknown = sorted(set(names) - {m.name for m in mappings})
        if unknown:
            raise CommandError(f"Unknown mapping(s): {', '.join(unknown)}.")
        failed = False
        for mapping in mappings:
            if options["enqueue"]:
                queued = reconciliation_enqueue(mapping=mapping)
                self.stdout.write(f"{mapping.name}: reconciliation #{queued.pk} queued.")
                continue
            reconciliation = Reconciliation.objects.create(table_mapping=mapping)
            done = reconciliation_run(reconciliation_id=reconciliation.pk)
            self.stdout.write(self.summary(done))
            failed = failed or done.status != JobStatus.SUCCEEDED
        if failed:
            raise CommandError("A reconciliation failed (see above).")

    @staticmethod
    def summary(reconciliation: Reconciliation) -> str:
        head = f"{reconciliation.table_mapping.name}: reconciliation #{reconciliation.pk} {reconciliation.status}"
        if reconciliation.status != JobStatus.SUCCEEDED:
            return f"{head}: {reconciliation.message}"
        started, finished = reconciliation.started_at, reconciliation.finished_at
        seconds = (finished - started).total_seconds() if started and finished else 0.0
        lines = [f"{head} in {seconds:.1f} s, {reconciliation.http_requests} HTTP requests."]
        lines += [f"  {label}: {reconciliation.counts.get(key, 0)}" for key, label in LABELS]
        return "\n".join(lines)

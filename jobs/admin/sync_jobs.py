"""The sync job list and page: counts, the live progress box the page polls while the job runs, cancelling."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from adminkit.admin import CappedCountAdminMixin
from adminkit.times import admin_time
from jobs.admin.confirm import (
    Confirmation,
    action_hidden_fields,
    confirmed,
    held_deletions_confirmation,
    previews_fragment,
    render_confirmation,
)
from jobs.admin.links import job_errors_links, requester_html
from jobs.choices import ACTIVE_STATUSES, JobKind, JobStatus
from jobs.models import SyncJob
from jobs.permissions import RunSyncPermissionMixin
from jobs.services import SyncNotStarted, sync_deletions_confirm, sync_job_cancel
from mappings.models import TableMapping

# The list's count columns: the real counter, and for a preview the count of what it would do (its preview keys).
COUNT_COLUMNS = [
    ("inserted", ("insert",)),
    ("modified", ("update",)),
    ("unchanged", ("unchanged",)),
    ("skipped", ("skip",)),
    ("failed", ("fail", "conflicts")),
    ("waiting", ("waiting",)),
    ("deleted", ("delete",)),
    ("coupled", ()),
    ("uncoupled", ("uncouple",)),
]


def _count_column(counter: str, preview_keys: tuple[str, ...]):
    @admin.display(description=counter, ordering=counter)
    def column(self, obj):
        if not obj.dry_run:
            return getattr(obj, counter)
        counts = (obj.preview or {}).get("counts", {})
        would = sum(counts.get(key, 0) for key in preview_keys)
        if counter == "coupled":  # pairs matched: no outcome of their own, kept beside the counts
            would = (obj.preview or {}).get("coupled", 0)
        # A preview writes nothing: its columns say what it would do, marked so.
        return format_html('<span class="would" title="a preview: would be {}">({})</span>', counter, would)

    column.__name__ = f"{counter}_count"
    return column


class MappingWithCompanyFilter(admin.RelatedFieldListFilter):
    """Each mapping with its company: with two companies the filter listed CUSTOMER twice, alike."""

    def field_choices(self, field, request, model_admin):
        mappings = TableMapping.objects.select_related("company").order_by("name", "company__name")
        return [(mapping.pk, mapping.label) for mapping in mappings]


class SyncJobAdmin(CappedCountAdminMixin, RunSyncPermissionMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "mapping_display",
        "kind_display",
        "status_badge",
        "when_display",
        *(f"{counter}_count" for counter, _ in COUNT_COLUMNS),
        "http_requests",
    ]
    list_filter = [
        "status",
        "kind",
        "direction",
        "table_mapping__company",
        ("table_mapping", MappingWithCompanyFilter),
        "dry_run",
    ]
    list_select_related = ["table_mapping__company", "requested_by"]
    show_full_result_count = False
    date_hierarchy = "queued_at"
    readonly_fields = [f.name for f in SyncJob._meta.fields] + ["run_or_preview"]
    change_form_template = "admin/jobs/syncjob/change_form.html"
    # Status, times, duration, HTTP requests, counts, errors link, message and a preview's sample live in the
    # progress box, which refreshes while the job runs (so it never contradicts itself); the fields below do not
    # change once the job is queued.
    fieldsets = [
        ("Run", {"fields": ["kind", "table_mapping", "direction", "run_or_preview", "rq_job_id"]}),
    ]
    actions = ["cancel_jobs", "confirm_held_deletions"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Company", ordering="table_mapping__company__name")
    def company(self, obj):
        return obj.table_mapping.company or "-"

    # Mapping and company, kind and direction share a cell each: as separate columns they pushed the counts off a
    # 1,366 px screen.
    @admin.display(description="mapping / company", ordering="table_mapping__name")
    def mapping_display(self, obj):
        return format_html("{}<br><small>{}</small>", obj.table_mapping, obj.table_mapping.company or "")

    @admin.display(description="kind / direction", ordering="kind")
    def kind_display(self, obj):
        return format_html("{}<br><small>{}</small>", obj.get_kind_display(), obj.get_direction_display())

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return obj.get_status_display() + (" (preview)" if obj.dry_run else "")

    @admin.display(description="run or preview")
    def run_or_preview(self, obj):
        # The dry_run field's help text ("a preview: planned, nothing written") read as a claim on a real run's page.
        return "A preview: planned, nothing written" if obj.dry_run else "A run: written to the systems"

    @admin.display(description="queued / took / by", ordering="queued_at")
    def when_display(self, obj):
        """When it was asked for, how long it ran and who or what asked, in one cell: more columns pushed the counts
        off a 1,366 px screen."""
        took = obj.duration if obj.finished_at else ("running" if obj.started_at else "")
        return format_html(
            '<span class="nowrap">{}</span><br><small>{}</small><br><small class="requester">{}</small>',
            admin_time(obj.queued_at),
            took or "-",
            requester_html(obj),
        )

    @admin.action(description="Cancel selected jobs", permissions=["run_sync"])
    def cancel_jobs(self, request, queryset):
        jobs = list(queryset.filter(status__in=ACTIVE_STATUSES).select_related("table_mapping__company"))
        if jobs and not confirmed(request):
            # Stopping runs midway leaves what they wrote: say so, with their counts, before anything stops.
            hidden = action_hidden_fields(request, "cancel_jobs", queryset)
            return render_confirmation(self, request, cancel_confirmation(jobs), hidden)
        for job in jobs:
            sync_job_cancel(job=job)
        self.message_user(request, f"Asked {len(jobs)} job(s) to stop.", messages.SUCCESS)

    @admin.action(description="Confirm the held deletions (past the safety stop)", permissions=["run_sync"])
    def confirm_held_deletions(self, request, queryset):
        holding = [job for job in queryset.select_related("table_mapping") if job.held_deletions]
        waiting = [job for job in holding if job.deletions_confirmed_at is None]
        if waiting and not confirmed(request):
            # Deleting in bulk past the safety stop: first say how many records, in which system, and how.
            hidden = action_hidden_fields(request, "confirm_held_deletions", queryset)
            return render_confirmation(self, request, held_deletions_confirmation(waiting), hidden)
        for job in holding:
            try:
                deletions_job = sync_deletions_confirm(job=job, user=request.user)
            except SyncNotStarted as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(
                request,
                f"Confirmed {len(job.held_deletions)} deletion(s) of job #{job.pk}: job #{deletions_job.pk} carries "
                "them out.",
                messages.SUCCESS,
            )
        if not holding:
            self.message_user(request, "None of the selected jobs holds deletions.", messages.WARNING)
        return None

    def get_urls(self):
        return [
            path(
                "<int:pk>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="jobs_syncjob_progress",
            ),
            path("<int:pk>/cancel/", self.admin_site.admin_view(self.cancel_view), name="jobs_syncjob_cancel"),
            path("previews/", self.admin_site.admin_view(self.previews_view), name="jobs_syncjob_previews"),
            *super().get_urls(),
        ]

    def progress_html(self, request, job: SyncJob) -> str:
        context = {
            "job": job,
            "can_cancel": self.has_run_sync_permission(request),
            "requester": requester_html(job),
            "errors": job_errors_links(job),
        }
        return render_to_string("admin/jobs/syncjob/progress.html", context, request=request)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = SyncJob.objects.select_related("table_mapping").filter(pk=object_id).first()
        if job is not None and self.has_view_permission(request, job):
            extra_context = {**(extra_context or {}), "progress_html": self.progress_html(request, job)}
        return super().change_view(request, object_id, form_url, extra_context)

    def progress_view(self, request, pk):
        """The small fragment the job page polls while the job runs."""
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        job = get_object_or_404(SyncJob, pk=pk)
        return HttpResponse(self.progress_html(request, job))

    def previews_view(self, request):
        """The fragment a run's confirmation polls while the previews made for it run (`?ids=` the preview jobs, in
        order; `dependencies=` those run as dependencies): their counts so far, and Confirm once all succeeded."""
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        ids = [int(i) for i in request.GET.get("ids", "").split(",") if i.isdigit()]
        dependencies = {int(i) for i in request.GET.get("dependencies", "").split(",") if i.isdigit()}
        by_pk = SyncJob.objects.filter(pk__in=ids, dry_run=True).select_related("table_mapping__company").in_bulk()
        previews = [by_pk[i] for i in ids if i in by_pk]
        return HttpResponse(previews_fragment(request, previews, dependencies))

    def cancel_view(self, request, pk):
        """The job page's Cancel button (POST only): first a page that says what stopping now leaves behind, then,
        posted again from it (confirm=yes), the run stops before it writes its next page."""
        if request.method != "POST" or not (
            self.has_view_permission(request) and self.has_run_sync_permission(request)
        ):
            raise PermissionDenied
        job = get_object_or_404(SyncJob.objects.select_related("table_mapping__company"), pk=pk)
        if job.status in ACTIVE_STATUSES and not confirmed(request):
            job_url = reverse("admin:jobs_syncjob_change", args=[job.pk])
            context = {
                **self.admin_site.each_context(request),
                "title": f"Cancel job #{job.pk}: are you sure?",
                "confirmation": cancel_confirmation([job]),
                "hidden": [],
                "form_url": request.get_full_path(),
                "back_url": job_url,  # the page the button was on (a GET of this URL is refused)
                "opts": self.model._meta,
            }
            return TemplateResponse(request, "admin/jobs/confirm_action.html", context)
        if job.status in ACTIVE_STATUSES:
            sync_job_cancel(job=job)
            self.message_user(
                request,
                f"Asked job #{job.pk} to stop: it stops before it sends its next page (writes already sent finish).",
            )
        else:
            self.message_user(request, f"Job #{job.pk} has already finished.", messages.WARNING)
        return redirect("admin:jobs_syncjob_change", job.pk)


def cancel_confirmation(jobs: list[SyncJob]) -> Confirmation:
    """What cancelling these jobs does, job by job: what each has read and written so far stays as it is."""
    rows: list[list[object]] = []
    written_total = 0
    for job in jobs:
        written = 0 if job.dry_run else job.inserted + job.modified + job.deleted + job.coupled + job.uncoupled
        written_total += written
        if job.status != JobStatus.RUNNING:
            effect = "never starts (queued: nothing read or written)"
        elif job.dry_run:
            effect = "stops; a preview has written nothing"
        else:
            effect = (
                f"stops before it sends its next page; the {written} record(s) written so far stay written, and so "
                "do the writes already sent, which finish and are counted"
            )
        rows.append(
            [
                f"#{job.pk} {job.table_mapping.label}",
                f"{job.get_kind_display()}, {job.get_direction_display()}",
                job.get_status_display(),
                job.records_read,
                "-" if job.dry_run else f"{job.inserted} / {job.modified} / {job.deleted} / {job.failed}",
                effect,
            ]
        )
    notes = [
        "Nothing written is undone: the records inserted, modified or deleted in Business Central or Dataverse by "
        "the pages already written stay so, each page whole (never half a page), and their couplings and errors stay "
        "recorded."
    ]
    if any(job.kind == JobKind.MODIFIED and not job.dry_run for job in jobs):
        notes.append(
            "A cancelled run of modified records does not move the mapping's watermark: the next run (scheduled or "
            "started by hand) reads the same changes again and finishes the work; what was written already is then "
            "found unchanged, not written twice."
        )
    if any(job.kind == JobKind.FULL and not job.dry_run for job in jobs):
        notes.append(
            "A cancelled full synchronization is not complete: the records it had not reached are synchronized only "
            "when a full synchronization runs again (what it wrote is then found unchanged)."
        )
    return Confirmation(
        title=f"Cancel {len(jobs)} job(s): are you sure?",
        question=(
            f"Cancel {len(jobs)} job(s)? A running job stops before it writes its next page; a queued one never "
            f"starts. {written_total} record(s) written by them so far stay written."
        ),
        columns=[
            "Job",
            "Kind",
            "Status",
            "Records read so far",
            "Inserted / modified / deleted / failed so far",
            "Cancelling it",
        ],
        rows=rows,
        notes=notes,
        confirm_label="Yes, cancel",
    )


for _counter, _keys in COUNT_COLUMNS:
    setattr(SyncJobAdmin, f"{_counter}_count", _count_column(_counter, _keys))

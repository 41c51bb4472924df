"""The sync job list and page: counts, the live progress box the page polls while the job runs, cancelling."""

from django.contrib import admin, messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import path

from jobs.choices import ACTIVE_STATUSES
from jobs.models import SyncJob
from jobs.permissions import RunSyncPermissionMixin
from jobs.services import SyncNotStarted, sync_deletions_confirm, sync_job_cancel


class SyncJobAdmin(RunSyncPermissionMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "table_mapping",
        "kind",
        "direction",
        "status_badge",
        "queued_at",
        "finished_at",
        "inserted",
        "modified",
        "unchanged",
        "skipped",
        "failed",
        "deleted",
        "coupled",
        "uncoupled",
        "http_requests",
    ]
    list_filter = ["status", "kind", "direction", "table_mapping", "dry_run"]
    list_select_related = ["table_mapping"]
    show_full_result_count = False
    date_hierarchy = "queued_at"
    readonly_fields = [f.name for f in SyncJob._meta.fields] + ["live_progress", "requests_by_kind"]
    # Status, counts, errors link, message and a preview's sample live in the progress box, which refreshes while
    # the job runs; the fields below do not change once the job has started.
    fieldsets = [
        (None, {"fields": ["live_progress"]}),
        ("Run", {"fields": ["kind", "table_mapping", "direction", "dry_run", "requested_by", "rq_job_id"]}),
        ("Details", {"fields": ["queued_at", "started_at", "finished_at", "requests_by_kind"]}),
    ]
    actions = ["cancel_jobs", "confirm_held_deletions"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return obj.get_status_display() + (" (preview)" if obj.dry_run else "")

    @admin.display(description="HTTP requests")
    def requests_by_kind(self, obj):
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted((obj.http_requests_by_kind or {}).items()))
        return f"{obj.http_requests}" + (f" ({kinds})" if kinds else "")

    @admin.display(description="progress")
    def live_progress(self, obj):
        return render_to_string("admin/jobs/syncjob/progress.html", {"job": obj})

    @admin.action(description="Cancel selected jobs", permissions=["run_sync"])
    def cancel_jobs(self, request, queryset):
        jobs = list(queryset.filter(status__in=ACTIVE_STATUSES))
        for job in jobs:
            sync_job_cancel(job=job)
        self.message_user(request, f"Asked {len(jobs)} job(s) to stop.", messages.SUCCESS)

    @admin.action(description="Confirm the held deletions (past the safety stop)", permissions=["run_sync"])
    def confirm_held_deletions(self, request, queryset):
        holding = [job for job in queryset.select_related("table_mapping") if job.held_deletions]
        for job in holding:
            try:
                confirmed = sync_deletions_confirm(job=job, user=request.user)
            except SyncNotStarted as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            self.message_user(
                request,
                f"Confirmed {len(job.held_deletions)} deletion(s) of job #{job.pk}: job #{confirmed.pk} carries them "
                f"out.",
                messages.SUCCESS,
            )
        if not holding:
            self.message_user(request, "None of the selected jobs holds deletions.", messages.WARNING)

    def get_urls(self):
        return [
            path(
                "<int:pk>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="jobs_syncjob_progress",
            ),
            *super().get_urls(),
        ]

    def progress_view(self, request, pk):
        """The small fragment the job page polls while the job runs."""
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        job = get_object_or_404(SyncJob, pk=pk)
        return HttpResponse(render_to_string("admin/jobs/syncjob/progress.html", {"job": job}))

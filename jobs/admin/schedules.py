"""Admin of schedules (state, next run, pause/resume/run now) and of webhook subscriptions (expiry, renew)."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from connectors.choices import ConnectionKind
from connectors.types import ConnectorError
from jobs.admin.confirm import action_hidden_fields, ask_before_sync
from jobs.choices import JobKind
from jobs.models import Schedule, ScheduleState, SubscriptionStatus, WebhookSubscription
from jobs.permissions import RunSyncPermissionMixin
from jobs.scheduling import schedules as schedule_services
from jobs.scheduling import subscriptions as subscription_services


class ScheduleAdmin(RunSyncPermissionMixin, admin.ModelAdmin):
    """Who may do what (README, "Permissions"): pausing only stops runs, so the change permission is enough; resuming,
    editing and subscribing decide when runs start, so they need the run-sync permission too; running now needs
    run-sync."""

    list_display = (
        "table_mapping",
        "company",
        "status",
        "next_run_at",
        "minutes_between_runs",
        "inactivity_timeout_minutes",
        "attempts",
        "wake_on_change",
        "last_finished_at",
        "last_message",
    )
    list_filter = ("table_mapping__company", "enabled", "state")
    list_select_related = ("table_mapping__company",)

    @admin.display(description="Company", ordering="table_mapping__company__name")
    def company(self, obj):
        return obj.table_mapping.company or "-"

    fields = (
        "table_mapping",
        "status",
        "next_run_at",
        "enabled",
        "minutes_between_runs",
        "inactivity_timeout_minutes",
        "max_attempts",
        "wake_on_change",
        "webhook_debounce_seconds",
        "failed_attempts",
        "last_finished_at",
        "last_message",
    )
    readonly_fields = ("table_mapping", "status", "failed_attempts", "last_finished_at", "last_message")
    actions = ("pause", "resume", "run_now", "subscribe_to_changes")

    def has_add_permission(self, request):
        return False  # every mapping gets its schedule when it is created

    def has_delete_permission(self, request, obj=None):
        return False  # pause instead; the schedule goes with its mapping

    def has_change_permission(self, request, obj=None):
        # An edit (next run, interval, enabled) or a resume can start runs: it needs the run-sync permission too.
        return super().has_change_permission(request, obj) and self.has_run_sync_permission(request)

    def has_pause_permission(self, request) -> bool:
        return super().has_change_permission(request)

    def save_model(self, request, obj, form, change):
        # The form shows the next run to the second (the stored one has microseconds): only a different minute is
        # an edit of it.
        planned = form.initial.get("next_run_at")
        next_run_edited = planned is None or abs(obj.next_run_at - planned) >= timedelta(minutes=1)
        if change and "minutes_between_runs" in form.changed_data and not next_run_edited:
            # The next run follows the new interval (not the one it was planned with), unless it was edited too.
            obj.next_run_at = schedule_services.schedule_next_run_for_interval(schedule=obj)
        super().save_model(request, obj, form, change)

    @admin.display(description="State")
    def status(self, obj: Schedule) -> str:
        return obj.status

    @admin.display(description="Failed attempts")
    def attempts(self, obj: Schedule) -> str:
        return f"{obj.failed_attempts} / {obj.max_attempts}"

    @admin.action(description="Pause the selected schedules", permissions=["pause"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        count = schedule_services.schedules_pause(schedules=queryset)
        self.message_user(request, f"{count} schedule(s) paused.")

    @admin.action(description="Resume the selected schedules", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        count = schedule_services.schedules_resume(schedules=queryset)
        self.message_user(request, f"{count} schedule(s) resumed; they run at the next tick.")

    @admin.action(description="Run the selected schedules now", permissions=["run_sync"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]):
        # A run writes in bulk: say first which jobs it makes, previewed now (a schedule runs its mapping's modified
        # records, without its dependencies, as at each interval), and run only while that preview holds.
        startable = queryset.filter(enabled=True).exclude(state=ScheduleState.RUNNING)
        mappings = [schedule.table_mapping for schedule in startable.select_related("table_mapping")]
        left_alone = queryset.count() - startable.count()
        asking = ask_before_sync(
            self,
            request,
            mappings,
            kind=JobKind.MODIFIED,
            with_dependencies=False,
            label="Run the schedules now",
            hidden=action_hidden_fields(request, "run_now", queryset),
            notes=[f"{left_alone} selected schedule(s) are paused or running already: they are left alone."]
            if left_alone
            else [],
        )
        if asking is not None:
            return asking
        count = schedule_services.schedules_run_now(schedules=queryset, user=request.user)
        self.message_user(request, f"{count} run(s) started (paused and running schedules are left alone).")
        return None

    @admin.action(description="Subscribe to change notifications of both systems", permissions=["change"])
    def subscribe_to_changes(self, request: HttpRequest, queryset: QuerySet[Schedule]):
        """Subscribe in Business Central and register the Dataverse webhook; say for each side what happened.

        A Dataverse registration that failed is left to be done by hand: the page then shows the endpoint URL, the
        header and the secret to enter in the Plug-in Registration Tool, this once (the secret is never shown again).
        """
        base_url = request.build_absolute_uri("/")
        by_hand = []
        for schedule in queryset.select_related("table_mapping"):
            mapping = schedule.table_mapping
            for side in (ConnectionKind.BUSINESS_CENTRAL, ConnectionKind.DATAVERSE):
                try:
                    subscription = subscription_services.subscription_create(
                        mapping=mapping, side=side, notification_base_url=base_url
                    )
                except subscription_services.SubscriptionNotCreated as exc:
                    self.message_user(request, f"{mapping.name}: {exc}", messages.ERROR)
                    continue
                if side == ConnectionKind.BUSINESS_CENTRAL:
                    self.message_user(request, f"{mapping.name}: subscribed in Business Central.", messages.SUCCESS)
                elif subscription.status == SubscriptionStatus.ACTIVE:
                    self.message_user(
                        request,
                        f"{mapping.name}: registered in Dataverse (a webhook service endpoint with steps for Create, "
                        f"Update and Delete of {subscription.resource}).",
                        messages.SUCCESS,
                    )
                else:
                    self.message_user(request, f"{mapping.name}: {subscription.last_error}", messages.ERROR)
                    by_hand.append(subscription)
        if by_hand:
            context = {
                **self.admin_site.each_context(request),
                "title": "Register the Dataverse webhook by hand",
                "opts": self.opts,
                "subscriptions": by_hand,
                "header": subscription_services.DATAVERSE_SECRET_HEADER,
            }
            return TemplateResponse(request, "admin/jobs/schedule/register_by_hand.html", context)
        return None


class WebhookSubscriptionForm(forms.ModelForm):
    new_secret = forms.CharField(
        required=False,
        strip=True,
        min_length=16,
        widget=forms.PasswordInput(render_value=False),
        help_text="Dataverse webhooks: the value of the secret header (x-syncadmin-webhook-secret) registered in "
        "Dataverse. Leave empty to keep the stored secret, which is never shown.",
    )

    class Meta:
        model = WebhookSubscription
        fields = ()

    def save(self, commit=True):
        if self.cleaned_data.get("new_secret"):
            self.instance.set_secret(self.cleaned_data["new_secret"])
        return super().save(commit=commit)


class WebhookSubscriptionAdmin(admin.ModelAdmin):
    form = WebhookSubscriptionForm
    list_display = (
        "table_mapping",
        "side",
        "status",
        "expires_at",
        "renewed_at",
        "last_notification_at",
        "notifications_received",
        "last_error",
    )
    list_filter = ("side", "status")
    list_select_related = ("table_mapping",)
    readonly_fields = (
        "table_mapping",
        "side",
        "status",
        "notification_url",
        "resource",
        "remote_id",
        "expires_at",
        "renewed_at",
        "last_notification_at",
        "notifications_received",
        "last_error",
    )
    fields = (*readonly_fields, "new_secret")
    actions = ("renew",)

    def has_add_permission(self, request):
        return False  # created from the schedules ("Subscribe to change notifications")

    @admin.action(description="Renew the selected subscriptions now", permissions=["change"])
    def renew(self, request: HttpRequest, queryset: QuerySet[WebhookSubscription]) -> None:
        for subscription in queryset.select_related("table_mapping"):
            try:
                subscription_services.subscription_renew(subscription=subscription)
            except Exception as exc:  # noqa: BLE001 - shown to the admin; the others are still renewed
                self.message_user(request, f"{subscription}: renewal failed: {exc}", messages.ERROR)
        self.message_user(request, "Renewal done.")

    def delete_model(self, request, obj):
        subscription_services.subscription_delete(subscription=obj)

    def delete_queryset(self, request, queryset):
        for subscription in queryset:
            try:
                subscription_services.subscription_delete(subscription=subscription)
            except ConnectorError as exc:
                self.message_user(request, f"{subscription}: not deleted in Business Central: {exc}", messages.ERROR)

"""Alert channels (with "Send a test"), alert rules and their incidents in the admin.

Registered in syncadmin/admin.py, like every model.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from operations.alerts import channel_test_message
from operations.models import RULE_PARAMETERS, AlertChannel, ChannelKind, Incident
from operations.notify import DeliveryFailed, deliver


class AlertChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "destination", "enabled"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "email_to"]
    actions = ["send_test"]
    fields = ["name", "kind", "enabled", "email_to", "webhook_url"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # webhook services are HTTPS

    @admin.display(description="Destination")
    def destination(self, obj: AlertChannel) -> str:
        if obj.kind == ChannelKind.EMAIL:
            return obj.email_to
        # The path of a Slack or Teams webhook URL is its key: show only where it goes.
        return obj.webhook_url.split("/")[2] if "://" in obj.webhook_url else "-"

    @admin.action(description="Send a test to the selected channels", permissions=["change"])
    def send_test(self, request: HttpRequest, queryset) -> None:
        for channel in queryset:
            self._send_test(request, channel)

    def _send_test(self, request: HttpRequest, channel: AlertChannel) -> None:
        try:
            deliver(channel, channel_test_message(channel.name))
        except DeliveryFailed as exc:
            self.message_user(request, f"{channel.name}: the test was not delivered: {exc}.", messages.ERROR)
        else:
            self.message_user(request, f"{channel.name}: test sent.", messages.SUCCESS)

    def get_urls(self):
        return [
            path(
                "<int:object_id>/send-test/",
                self.admin_site.admin_view(self.send_test_view),
                name="operations_alertchannel_send_test",
            ),
            *super().get_urls(),
        ]

    def send_test_view(self, request: HttpRequest, object_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        channel = get_object_or_404(AlertChannel, pk=object_id)
        if not self.has_change_permission(request, channel):
            raise PermissionDenied
        self._send_test(request, channel)
        return HttpResponseRedirect(reverse("admin:operations_alertchannel_change", args=[channel.pk]))


class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "table_mapping", "threshold", "window_minutes", "pause_schedule", "enabled"]
    list_filter = ["kind", "enabled", "pause_schedule"]
    list_select_related = ["table_mapping"]
    search_fields = ["name"]
    filter_horizontal = ["channels"]
    readonly_fields = ["what_the_kinds_mean"]
    fields = [
        "name",
        "kind",
        "what_the_kinds_mean",
        "enabled",
        "table_mapping",
        "error_class",
        "threshold",
        "window_minutes",
        "pause_schedule",
        "channels",
    ]

    @admin.display(description="What each kind watches")
    def what_the_kinds_mean(self, obj) -> str:
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "", "<li><b>{}</b>: {}</li>", ((kind.label, text) for kind, text in RULE_PARAMETERS.items())
            ),
        )


class IncidentAdmin(admin.ModelAdmin):
    """What fired and when it cleared: written by the evaluation only."""

    list_display = ["rule", "subject_name", "state", "opened_at", "resolved_at", "schedule_paused", "summary"]
    list_filter = ["rule", ("resolved_at", admin.EmptyFieldListFilter), "schedule_paused"]
    list_select_related = ["rule"]
    search_fields = ["subject_name", "summary"]
    date_hierarchy = "opened_at"

    @admin.display(description="State")
    def state(self, obj: Incident) -> str:
        return "open" if obj.is_open else "resolved"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

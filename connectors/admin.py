"""Connections in the admin: edit, store the secret (never shown back), and test."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse

from connectors.forms import AppRegistrationForm, ConnectionForm
from connectors.models import AppRegistration, Connection
from connectors.services import connection_save_secret, connection_test


# Generic in django-stubs only: subscripting it at run time would need django_stubs_ext.monkeypatch() in settings.
class AppRegistrationInline(admin.TabularInline):  # type: ignore[type-arg]
    """Further client id and secret pairs, used in turn with the connection's own to multiply per-user limits."""

    model = AppRegistration
    form = AppRegistrationForm
    extra = 0
    fields = ["client_id", "client_secret", "secret_status", "enabled"]
    readonly_fields = ["secret_status"]
    verbose_name = "further app registration"
    verbose_name_plural = "further app registrations (used in turn, to multiply the services' per-user limits)"

    @admin.display(description="Stored secret")
    def secret_status(self, obj: AppRegistration) -> str:
        return "stored (encrypted)" if obj.client_secret_encrypted else "not set"


class ConnectionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = ConnectionForm
    list_display = ["name", "kind", "environment_url", "enabled", "secret_status", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "environment_url", "client_id"]
    readonly_fields = ["secret_status", "dataverse_company_id", "created_at", "updated_at"]
    actions = ["test_connections"]
    inlines = [AppRegistrationInline]
    fieldsets = [
        (None, {"fields": ["kind", "name", "enabled"]}),
        ("Where", {"fields": ["environment_url", "tenant", "bc_environment", "bc_company_id", "dataverse_company_id"]}),
        (
            "Credentials",
            {
                "fields": [
                    "client_id",
                    "client_secret",
                    "client_secret_reference",
                    "secret_status",
                    "token_url",
                    "scope",
                ]
            },
        ),
        ("Limits", {"fields": ["page_size", "batch_size", "timeout_seconds", "max_concurrency"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="Client secret")
    def secret_status(self, obj: Connection) -> str:
        if obj.client_secret_reference:
            return f"read from {obj.client_secret_reference}"
        return "stored (encrypted)" if obj.client_secret_encrypted else "not set"

    def save_model(self, request: HttpRequest, obj: Connection, form: Form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        connection_save_secret(connection=obj, client_secret=form.cleaned_data.get("client_secret", ""))

    @admin.action(description="Test connection", permissions=["change"])  # as the page's button (test_view)
    def test_connections(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for connection in queryset:
            self._report(request, connection)

    def _report(self, request: HttpRequest, connection: Connection) -> None:
        result = connection_test(connection=connection)
        level = messages.SUCCESS if result.ok else messages.ERROR
        self.message_user(request, f"{connection.name}: {result.message}", level)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:object_id>/test/",
                self.admin_site.admin_view(self.test_view),
                name="connectors_connection_test",
            ),
            *super().get_urls(),
        ]

    def test_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        connection = get_object_or_404(Connection, pk=object_id)
        if not self.has_change_permission(request, connection):
            raise PermissionDenied
        self._report(request, connection)
        return HttpResponseRedirect(reverse("admin:connectors_connection_change", args=[connection.pk]))

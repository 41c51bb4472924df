"""Admin for the sandbox: injected faults, service settings, a page to change or delete emulated rows as another
user would (to demo conflicts and deletions), and the emulated tables of both services to browse.

Registered only when settings.SANDBOX_ENABLED. Faults, settings and changing rows are for superusers only: they change
what the emulated services answer, and their data, for everyone; no permission of the product grants them. The
emulated tables are read-only for everybody (the services' own APIs are the only writers), and seeing one needs its
view permission, so a new user sees what a sync did on either side without an API token.
"""

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from sandbox import schema, testing
from sandbox.forms import OutOfBandEditForm
from sandbox.models import ROW_MODELS, Fault, Setting
from sandbox.wire import ApiError


class SandboxAdmin(admin.ModelAdmin):
    """Every page and action of the model for active superusers, none for anyone else (whatever their permissions)."""

    def _is_superuser(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_module_permission(self, request):
        return self._is_superuser(request)

    def has_view_permission(self, request, obj=None):
        return self._is_superuser(request)

    def has_add_permission(self, request):
        return self._is_superuser(request)

    def has_change_permission(self, request, obj=None):
        return self._is_superuser(request)

    def has_delete_permission(self, request, obj=None):
        return self._is_superuser(request)


class FaultAdmin(SandboxAdmin):
    """Adding a fault makes the next `remaining` requests to the service fail that way."""

    list_display = ("__str__", "kind", "service", "remaining", "retry_after", "seconds", "created")
    list_filter = ("kind", "service")
    change_list_template = "admin/sandbox/fault_changelist.html"

    def get_urls(self):
        urls = [
            path(
                "out-of-band-edit/",
                self.admin_site.admin_view(self.out_of_band_edit_view),
                name="sandbox_out_of_band_edit",
            )
        ]
        return urls + super().get_urls()

    def out_of_band_edit_view(self, request):
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = OutOfBandEditForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            service, entity_set = form.cleaned_data["table"].split(":")
            record_id = form.cleaned_data["record_id"]
            try:
                if form.cleaned_data["action"] == "delete":
                    testing.delete_as_another_user(service, entity_set, record_id)
                    messages.success(request, f"Deleted {entity_set} {record_id} as another user.")
                else:
                    testing.edit_as_another_user(service, entity_set, record_id, **form.cleaned_data["values"])
                    messages.success(request, f"Changed {entity_set} {record_id} as another user.")
                return redirect(reverse("admin:sandbox_out_of_band_edit"))
            except (ApiError, LookupError) as error:
                form.add_error(None, getattr(error, "message", str(error)))
        context = {
            **self.admin_site.each_context(request),
            "title": "Change a sandbox row as another user",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/sandbox/out_of_band.html", context)


class SettingAdmin(SandboxAdmin):
    """Token lifetime, page caps, throttling, alternate keys, webhook timing (see sandbox/rows.py DEFAULTS)."""

    list_display = ("key", "value")
    search_fields = ("key",)


class EmulatedRowAdmin(admin.ModelAdmin):
    """One emulated table, read-only: its list (name, number, last change) and each row's values."""

    table: schema.Table
    actions = None  # not even "delete selected": only the services' APIs write these rows
    list_per_page = 50
    show_full_result_count = False

    def get_list_display(self, request):
        return ["rid", *self._shown_fields(), "modified_at"]

    def get_search_fields(self, request):
        return self._shown_fields()

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def get_ordering(self, request):
        return ["-modified_at"]

    def _shown_fields(self) -> list[str]:
        """The record's name and number, if it has them (e.g. displayName and number of a customer)."""
        names = [self.table.primary_name, self.table.number_field, "accountnumber", "email", "emailaddress1"]
        fields = {f.name for f in self.model._meta.fields}
        shown = []
        for name in names:
            column = self.table.column(name) if name else None
            storage = self.table.storage(column) if column else ""
            if storage in fields and storage not in shown and storage != "rid":
                shown.append(storage)
        return shown

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _row_admin(table: schema.Table) -> type[EmulatedRowAdmin]:
    return type(f"{table.model_name}Admin", (EmulatedRowAdmin,), {"table": table, "__module__": __name__})


if settings.SANDBOX_ENABLED:  # absent, not only hidden, when the sandbox is off
    admin.site.register(Fault, FaultAdmin)
    admin.site.register(Setting, SettingAdmin)
    for _table in schema.BC_TABLES + schema.DATAVERSE_TABLES:
        admin.site.register(ROW_MODELS[(_table.service, _table.entity_set)], _row_admin(_table))

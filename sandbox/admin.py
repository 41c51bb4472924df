"""Admin for the sandbox: injected faults, service settings, a page to change or delete emulated rows as another
user would (to demo conflicts and deletions), and the emulated tables of both services to browse.

Registered only when settings.SANDBOX_ENABLED. Faults, settings and changing rows are for superusers only: they change
what the emulated services answer, and their data, for everyone; no permission of the product grants them. The
emulated tables are read-only for everybody (the services' own APIs are the only writers), and seeing one needs its
view permission, so a new user sees what a sync did on either side without an API token.
"""

import re

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from sandbox import schema, testing
from sandbox.forms import OutOfBandEditForm
from sandbox.models import ROW_MODELS, Company, Fault, Setting
from sandbox.rows import DB
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


# Labels of Dataverse's lower-case column names (Business Central's camelCase ones read as words by themselves).
DATAVERSE_LABELS = {
    "accountnumber": "Account number",
    "emailaddress1": "Email",
    "telephone1": "Phone",
    "fullname": "Full name",
    "firstname": "First name",
    "lastname": "Last name",
    "statecode": "Status",
    "statuscode": "Status reason",
    "cdm_name": "Name",
    "cdm_companycode": "Company code",
    "bcbi_externalid": "Business Central company id",
    "isocurrencycode": "Currency code",
    "currencyname": "Currency name",
    "domainname": "User name",
    "internalemailaddress": "Email",
    "isdisabled": "Disabled",
    "islicensed": "Licensed",
    "isintegrationuser": "Integration user",
    "customertypecode": "Relationship type",
}
SYSTEM_LABELS = {
    "rid": "Id",
    "created_at": "Created at",
    "modified_at": "Modified at",
    "version": "Version",
    "etag": "ETag",
    "created_by": "Created by",
    "modified_by": "Modified by",
}


STAMPS = {"created_at", "modified_at"}


def column_label(table: schema.Table, field_name: str) -> str:
    """What a person calls a stored column: "Display name" for displayName, "Email" for emailaddress1."""
    if field_name in SYSTEM_LABELS:
        return SYSTEM_LABELS[field_name]
    column = next((c for c in table.columns if table.storage(c) == field_name), None)
    if column is not None and column.label:
        return column.label
    if field_name in DATAVERSE_LABELS:
        return DATAVERSE_LABELS[field_name]
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", field_name)  # camelCase
    words = re.sub(r"^(cr\d+|cdm|bcbi|msdyn)_", "", words).replace("_", " ")
    return words[:1].upper() + words[1:].lower()


class CompanyFilter(admin.SimpleListFilter):
    """The company a row belongs to: Business Central's per-company tables, Dataverse's company lookup."""

    title = "company"
    parameter_name = "company"

    def lookups(self, request, model_admin):
        return model_admin.company_choices()

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.model_admin_field: self.value()})
        return queryset

    def __init__(self, request, params, model, model_admin):
        self.model_admin_field = model_admin.company_field
        super().__init__(request, params, model, model_admin)


class EmulatedRowAdmin(admin.ModelAdmin):
    """One emulated table, read-only: its list (name, number, company, last change) and each row's values, under the
    labels a person reads ("Display name", not displayName)."""

    table: schema.Table
    # The model field naming the row's company: a Business Central company's id, or the Dataverse cdm_company
    # lookup; "" for tables of no company. The demo's two companies share Dataverse and look alike otherwise.
    company_field: str = ""
    actions = None  # not even "delete selected": only the services' APIs write these rows
    list_per_page = 50
    show_full_result_count = False

    def get_list_display(self, request):
        shown = [self._label_of(name) for name in ["rid", *self._shown_fields()]]
        return [*shown, *(["company_name"] if self.company_field else []), self._label_of("modified_at")]

    def get_list_filter(self, request):
        return [CompanyFilter] if self.company_field else []

    def get_search_fields(self, request):
        return self._shown_fields()

    def get_fields(self, request, obj=None):
        names = [self._label_of(f.name) for f in self.model._meta.fields]
        return [*names, *(["company_name"] if self.company_field else [])]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def get_ordering(self, request):
        return ["-modified_at"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if not self.company_field:
            return queryset
        names = self._companies().filter(rid=OuterRef(self.company_field)).values(self._company_name_field())[:1]
        return queryset.annotate(company_label=Subquery(names))

    @admin.display(description="Company", ordering="company_label")
    def company_name(self, obj):
        return getattr(obj, "company_label", None) or getattr(obj, self.company_field) or "-"

    def company_choices(self) -> list[tuple[str, str]]:
        return list(
            self._companies().order_by(self._company_name_field()).values_list("rid", self._company_name_field())
        )

    def _companies(self):
        if self.table.service == "bc":
            return Company.objects.using(DB)
        return ROW_MODELS[("dataverse", "cdm_companies")].objects.using(DB)

    def _company_name_field(self) -> str:
        return "display_name" if self.table.service == "bc" else "cdm_name"

    @classmethod
    def _label_of(cls, field_name: str) -> str:
        return f"col_{field_name}"

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


def _column_display(table: schema.Table, field_name: str):
    """The admin column of one stored field, under its label, sorted by the field."""

    def show(self, obj):
        value = getattr(obj, field_name)
        if field_name in STAMPS and value:
            # Stored as the wire's ISO string ("2026-12-05T05:21:29.000Z"); shown as the admin's other times.
            return f"{value[:10]} {value[11:16]} UTC"
        return value

    return admin.display(description=column_label(table, field_name), ordering=field_name)(show)


def _row_admin(table: schema.Table) -> type[EmulatedRowAdmin]:
    model = ROW_MODELS[(table.service, table.entity_set)]
    attrs = {"table": table, "__module__": __name__}
    attrs.update({f"col_{f.name}": _column_display(table, f.name) for f in model._meta.fields})
    fields = {f.name for f in model._meta.fields}
    if table.service == "bc":
        attrs["company_field"] = "company"
    elif "bcbi_companyid" in fields:
        attrs["company_field"] = "bcbi_companyid"
    if attrs.get("company_field"):  # its name is the Company column
        field = attrs["company_field"]
        attrs[f"col_{field}"] = admin.display(description="Company id", ordering=field)(attrs[f"col_{field}"])
    return type(f"{table.model_name}Admin", (EmulatedRowAdmin,), attrs)


if settings.SANDBOX_ENABLED:  # absent, not only hidden, when the sandbox is off
    admin.site.register(Fault, FaultAdmin)
    admin.site.register(Setting, SettingAdmin)
    for _table in schema.BC_TABLES + schema.DATAVERSE_TABLES:
        admin.site.register(ROW_MODELS[(_table.service, _table.entity_set)], _row_admin(_table))

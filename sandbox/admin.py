"""Admin for the sandbox: injected faults, service settings, and a page to change or delete emulated rows as
another user would (to demo conflicts and deletions)."""

from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from sandbox import testing
from sandbox.forms import OutOfBandEditForm
from sandbox.models import Fault, Setting
from sandbox.wire import ApiError


@admin.register(Fault)
class FaultAdmin(admin.ModelAdmin):
    """Adding a fault makes the next `remaining` requests to the service fail that way."""

    list_display = ("kind", "service", "remaining", "retry_after", "seconds", "created")
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
        if not request.user.is_staff:
            return redirect("admin:login")
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


@admin.register(Setting)
class SettingAdmin(admin.ModelAdmin):
    """Token lifetime, page caps, throttling, alternate keys, webhook timing (see sandbox/rows.py DEFAULTS)."""

    list_display = ("key", "value")
    search_fields = ("key",)

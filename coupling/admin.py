"""Coupling browsing in the admin: the coupling list (one FilterSet form, capped counts), the ambiguous matches and
the records kept uncoupled.

These classes register nothing and know no job: `syncadmin/admin.py` registers each model once, adding the sync
actions and the compare and match pages of `jobs` through its mixins.
"""

from django.contrib import admin

from adminkit.admin import CappedCountAdminMixin
from coupling.filters import CouplingListFilter


class CouplingAdmin(CappedCountAdminMixin, admin.ModelAdmin):
    list_display = ["id", "table_mapping", "bc_name", "dataverse_name", "last_results", "skipped", "updated_at"]
    list_display_links = ["id"]
    # One django-filter FilterSet (mapping, skipped, last result per direction, name or id) instead of the admin's
    # per-field filters: one form, usable from selectors and tests too.
    list_filter = [CouplingListFilter]
    list_select_related = ["table_mapping"]
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts would COUNT the whole table per choice

    @admin.display(description="last results")
    def last_results(self, obj):
        to_dv = obj.get_last_result_to_dataverse_display() if obj.last_result_to_dataverse else "not yet"
        from_dv = obj.get_last_result_from_dataverse_display() if obj.last_result_from_dataverse else "not yet"
        text = f"to Dataverse: {to_dv} · from Dataverse: {from_dv}"
        if obj.first_sync_direction:
            text += f" · first sync {obj.get_first_sync_direction_display().lower()} pending"
        return text + (" · being created" if obj.pending else "")

    def get_readonly_fields(self, request, obj=None):
        # Every field: ids, names, versions (ETags, modified-on), results and flags are the engine's record of the
        # two systems. An edited ETag or id silently makes the next run overwrite a change or write to the wrong
        # record; the actions (synchronize, retry skipped, uncouple, resolve a conflict) change them safely.
        return [field.name for field in self.model._meta.fields]

    def has_change_permission(self, request, obj=None):
        # Nothing on the page can be changed (see get_readonly_fields): Django then titles it "View coupling" and
        # offers Close instead of Save buttons that would save nothing.
        return False

    def has_delete_permission(self, request, obj=None):
        # Deleting the row is not uncoupling: the Dataverse row would keep this company's stamp and the pair's
        # errors would stay open. Uncouple (the list's action, the button on a coupling's page) does both.
        return False


class AmbiguousMatchAdmin(admin.ModelAdmin):
    """Records that match-based coupling found several partners for."""

    list_display = ["record_name", "side", "table_mapping", "candidate_list", "created_at"]
    list_filter = ["table_mapping", "side"]
    list_select_related = ["table_mapping"]
    show_full_result_count = False
    search_fields = ["record_name"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="candidates")
    def candidate_list(self, obj):
        return self.candidate_names(obj)

    @staticmethod
    def candidate_names(obj) -> str:
        return ", ".join(
            (c.get("name") or c.get("id", "")) + (f" ({c['details']})" if c.get("details") else "")
            for c in obj.candidates[:5]
        )


class KeptRecordAdmin(admin.ModelAdmin):
    """Records a deletion policy ("uncouple and keep the other record") left uncoupled on purpose, each with why:
    runs create no partner for them. Deleting an entry forgets that choice: the next runs create its partner."""

    list_display = ["record_name", "side", "table_mapping", "reason", "created_at"]
    list_filter = ["table_mapping", "side"]
    list_select_related = ["table_mapping"]
    show_full_result_count = False
    search_fields = ["record_name"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

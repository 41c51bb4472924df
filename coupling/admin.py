from django.contrib import admin

from coupling.models import Coupling


@admin.register(Coupling)
class CouplingAdmin(admin.ModelAdmin):
    list_display = [
        "table_mapping",
        "bc_name",
        "dataverse_name",
        "last_result_to_dataverse",
        "last_result_from_dataverse",
        "skipped",
        "pending",
        "updated_at",
    ]
    list_filter = ["table_mapping", "skipped", "pending", "last_result_to_dataverse", "last_result_from_dataverse"]
    list_select_related = ["table_mapping"]
    search_fields = ["bc_name", "dataverse_name", "=bc_id", "=dataverse_id"]
    show_full_result_count = False
    readonly_fields = [
        "bc_modified_on",
        "dataverse_modified_on",
        "bc_etag",
        "dataverse_etag",
        "last_job_to_dataverse",
        "last_job_from_dataverse",
        "created_at",
        "updated_at",
    ]

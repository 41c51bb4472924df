from django.apps import AppConfig


class MappingsConfig(AppConfig):
    name = "mappings"
    verbose_name = "Mappings"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from mappings.models import FieldMapping, touch_table_mapping

        # A field mapping's change is a change of its table mapping (skipped records are un-skipped after either).
        post_save.connect(touch_table_mapping, sender=FieldMapping, dispatch_uid="field_mapping_saved")
        post_delete.connect(touch_table_mapping, sender=FieldMapping, dispatch_uid="field_mapping_deleted")

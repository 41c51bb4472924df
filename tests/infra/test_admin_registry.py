"""Each model's admin is registered once, in one place: `syncadmin/admin.py` composes the product's ModelAdmins
(the sandbox registers its own in `sandbox/admin.py`), and no module replaces another's registration."""

import re

from django.conf import settings
from django.contrib import admin

from sandbox.models import ROW_MODELS

PACKAGES = ["adminkit", "connectors", "coupling", "jobs", "mappings", "operations", "sandbox", "syncadmin"]
REGISTERS = re.compile(r"\badmin\.register\(|\bsite\.register\(")


def test_every_model_admin_of_ours_is_a_class_of_the_module_that_composes_the_admin():
    ours = {
        model._meta.label: type(model_admin).__module__
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in PACKAGES
    }

    assert ours == {
        "connectors.Connection": "syncadmin.admin",
        "mappings.TableMapping": "syncadmin.admin",
        "mappings.MappingChange": "syncadmin.admin",
        "coupling.Coupling": "syncadmin.admin",
        "coupling.AmbiguousMatch": "syncadmin.admin",
        "coupling.KeptRecord": "syncadmin.admin",
        "jobs.SyncJob": "syncadmin.admin",
        "jobs.SyncError": "syncadmin.admin",
        "jobs.Reconciliation": "syncadmin.admin",
        "jobs.Schedule": "syncadmin.admin",
        "jobs.WebhookSubscription": "syncadmin.admin",
        "operations.AlertChannel": "syncadmin.admin",
        "operations.AlertRule": "syncadmin.admin",
        "operations.Incident": "syncadmin.admin",
        "sandbox.Fault": "sandbox.admin",
        "sandbox.Setting": "sandbox.admin",
        # The emulated tables, browsed read-only.
        **{f"sandbox.{model.__name__}": "sandbox.admin" for model in ROW_MODELS.values()},
    }


def _sources():
    for package in PACKAGES:
        for path in sorted((settings.BASE_DIR / package).rglob("*.py")):
            yield str(path.relative_to(settings.BASE_DIR)), path.read_text(encoding="utf-8")


def test_only_the_composing_modules_register_a_model_admin():
    registering = sorted(name for name, text in _sources() if REGISTERS.search(text))

    assert registering == ["sandbox/admin.py", "syncadmin/admin.py"]


def test_no_module_unregisters_a_model_admin():
    assert [name for name, text in _sources() if ".unregister(" in text] == []


def test_a_composed_admin_keeps_every_column_its_apps_admin_shows():
    """A composed admin lists its columns itself (its mixins add theirs): a column added to the app's own admin must
    not vanish from the page because the composed list was not updated. Replaced columns are named here."""
    from coupling.admin import AmbiguousMatchAdmin, CouplingAdmin, KeptRecordAdmin
    from mappings.admin import TableMappingAdmin

    replaced = {CouplingAdmin: {"bc_name": "bc_record", "dataverse_name": "dataverse_record", "updated_at": None}}
    for base in (TableMappingAdmin, CouplingAdmin, AmbiguousMatchAdmin, KeptRecordAdmin):
        registered = next(model_admin for model_admin in admin.site._registry.values() if isinstance(model_admin, base))
        expected = [replaced.get(base, {}).get(column, column) for column in base.list_display]
        missing = [column for column in expected if column and column not in registered.list_display]
        assert not missing, f"{type(registered).__name__} lost {missing} of {base.__name__}.list_display"

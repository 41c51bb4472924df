"""Values for new records chosen by a filter on the source record, end to end (real RQ worker, real HTTP into the
sandbox, real database).

Business Central 2024 wave 2 lets an integration table mapping choose among configuration templates for new
records by a filter on the source record
(https://learn.microsoft.com/en-us/dynamics365/release-plan/2024wave2/smb/dynamics365-business-central/use-multiple-templates-new-records-synchronizing-data-dynamics-365-sales).
"""

import pytest

from coupling.models import Coupling
from mappings.choices import UpdateConflictResolution
from mappings.models import NewRecordTemplate, TableMapping
from sandbox import testing as sandbox
from tests.jobs.test_sync_rules import account, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def test_the_first_template_whose_filter_the_source_record_matches_gives_the_new_records_values(
    sandbox_connections,
    run,  # noqa: F811
):
    from connectors.clients import open_client

    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    mapping.sync_only_coupled = False
    mapping.update_conflict_resolution = UpdateConflictResolution.SEND_TO_DATAVERSE
    mapping.save()
    with open_client(sandbox_connections[0]) as bc:
        ids = sorted(
            row["id"]
            for page in bc.read_pages("customers", select=["id"], filter=mapping.table_filter or None)
            for row in page.rows
        )
    foreign = set(ids[:3])
    for bc_id in foreign:
        sandbox.edit_as_another_user("bc", "customers", bc_id, country="NL")
    NewRecordTemplate.objects.create(
        table_mapping=mapping,
        position=10,
        name="Domestic",
        target="dataverse",
        source_filter="country eq 'US'",
        values={"description": "Domestic terms"},
    )
    NewRecordTemplate.objects.create(
        table_mapping=mapping, position=20, name="Others", target="dataverse", values={"description": "Foreign terms"}
    )
    # A template for the other system's new records does not apply to these.
    NewRecordTemplate.objects.create(
        table_mapping=mapping, position=5, target="bc", values={"description": "wrong system"}
    )

    (to_dataverse,) = run(mapping, direction="to_dataverse")

    assert to_dataverse.inserted == len(ids) and to_dataverse.failed == 0
    for coupling in Coupling.objects.filter(table_mapping=mapping):
        row = account(sandbox_connections, coupling.dataverse_id)
        expected = "Foreign terms" if str(coupling.bc_id) in foreign else "Domestic terms"
        assert row["description"] == expected, coupling.bc_name
        assert row["customertypecode"] == 3  # the mapping's own values for new records still apply beneath
    assert {str(c.bc_id) for c in Coupling.objects.filter(table_mapping=mapping)} >= foreign

"""The coupling page shows the engine's record of a pair; nobody edits its ids, versions or flags there."""

import uuid

import pytest
from django.urls import reverse

from coupling.models import Coupling
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db


def test_the_coupling_page_offers_no_field_to_edit_and_a_forged_post_changes_nothing(admin_client):
    coupling = Coupling.objects.create(
        table_mapping=TableMapping.objects.get(name="CUSTOMER"),
        bc_id=uuid.uuid4(),
        dataverse_id=uuid.uuid4(),
        bc_name="Adatum",
        bc_etag='W/"1"',
        dataverse_etag='W/"2"',
    )
    before = Coupling.objects.filter(pk=coupling.pk).values().get()
    url = reverse("admin:coupling_coupling_change", args=[coupling.pk])

    page = admin_client.get(url).content.decode()
    for name in (
        "bc_id",
        "dataverse_id",
        "bc_etag",
        "dataverse_etag",
        "skipped",
        "pending",
        "last_result_to_dataverse",
    ):
        assert f'name="{name}"' not in page, name
    assert "W/&quot;1&quot;" in page  # shown, read-only

    admin_client.post(
        url,
        {
            "table_mapping": coupling.table_mapping_id,
            "bc_id": str(uuid.uuid4()),
            "dataverse_id": str(uuid.uuid4()),
            "bc_etag": 'W/"99"',
            "skipped": "on",
            "pending": "on",
            "last_result_to_dataverse": "success",
        },
    )

    after = Coupling.objects.filter(pk=coupling.pk).values().get()
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }

"""The "Test filter" page of a second company's mapping counts that company's records: its own Business Central
connection, and on Dataverse the rows the mapping synchronizes (its company's or none, `TableMapping.dataverse_filter`).
Two companies of one sandbox environment with different numbers of customers, one Dataverse; real HTTP in process."""

import re

import pytest
from django.urls import reverse

from connectors.clients import open_client
from connectors.models import Connection
from connectors.types import WriteOperation
from mappings.companies import dataverse_company_row
from mappings.defaults import create_default_mappings
from mappings.models import TableMapping
from sandbox import services as sandbox

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


@pytest.fixture
def two_companies(sandbox_connections):
    """Company A (the seeded one, many customers) and company B (6 customers), each with its default mappings; two
    Dataverse accounts stamped with A's company, which B's mappings do not synchronize."""
    bc_a, dataverse = sandbox_connections
    sandbox.seed_second_company(customers=6, shared=3)
    bc_b = Connection.objects.get(pk=bc_a.pk)
    bc_b.pk = None
    bc_b.name = "Sandbox Business Central Canada"
    bc_b.bc_company_id = sandbox.second_company_id()
    bc_b.save()
    TableMapping.objects.filter(company__isnull=True).update(company=bc_a)
    create_default_mappings(company=bc_b)
    with open_client(dataverse) as client:
        row_a = dataverse_company_row(bc_a, client)
        stamped = [
            WriteOperation(
                kind="create",
                entity_set="accounts",
                ref=str(n),
                values={
                    "name": f"A only {n}",
                    "customertypecode": 3,
                    "bcbi_companyid@odata.bind": f"/cdm_companies({row_a})",
                },
            )
            for n in range(2)
        ]
        assert all(result.ok for result in client.write_many(stamped))
    return bc_a, bc_b, dataverse


def counts_on_page(admin_client, mapping, **tried) -> list[int]:
    url = reverse("admin:mappings_tablemapping_test_filter", args=[mapping.pk])
    html = admin_client.get(url, tried or None).content.decode()
    counts = [int(n) for n in re.findall(r'class="match-count">(\d+)<', html)]
    assert len(counts) == 2, html[-3000:]
    return counts


def count(connection, entity_set, flt) -> int:
    with open_client(connection) as client:
        return client.count(entity_set, filter=flt or None)


def test_the_test_filter_page_counts_the_mappings_own_company(admin_client, two_companies):
    bc_a, bc_b, dataverse = two_companies
    customer_b = TableMapping.objects.get(name="CUSTOMER", company=bc_b)
    in_a = count(bc_a, "customers", customer_b.table_filter)
    in_b = count(bc_b, "customers", customer_b.table_filter)
    assert in_a != in_b  # the companies hold different numbers of customers
    rows_of_b = count(dataverse, "accounts", customer_b.dataverse_filter)
    assert rows_of_b != count(dataverse, "accounts", customer_b.integration_table_filter)

    assert counts_on_page(admin_client, customer_b) == [in_b, rows_of_b]

    # Filters tried on the page (not saved) are counted the same way: in B, and B's rows or no company's.
    tried = {"table_filter": "", "integration_table_filter": "statecode eq 0"}
    shown = counts_on_page(admin_client, customer_b, **tried)
    b_rows = customer_b.dataverse_filter.replace(customer_b.integration_table_filter, "statecode eq 0")
    assert shown == [count(bc_b, "customers", ""), count(dataverse, "accounts", b_rows)]
    assert shown[1] < count(dataverse, "accounts", "statecode eq 0")

    # Company A's mapping still counts A's records.
    customer_a = TableMapping.objects.get(name="CUSTOMER", company=bc_a)
    assert counts_on_page(admin_client, customer_a)[0] == in_a

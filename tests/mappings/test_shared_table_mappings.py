"""Several mappings on one Business Central table: each record belongs to the first mapping, by record priority,
whose filter it matches; the rule is checked when a mapping is saved, and the engine follows it (real HTTP into the
sandbox, real RQ worker)."""

import re

import pytest

from connectors.clients import open_client
from connectors.types import WriteOperation
from coupling.models import Coupling
from jobs.choices import JobStatus
from jobs.models import SyncJob
from jobs.services import sync_enqueue
from mappings.models import TableMapping
from mappings.services import configuration_snapshot

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def _persons_mapping(priority: int, table_filter: str = "blocked eq ' ' and type eq 'Person'") -> TableMapping:
    """Customers that are persons, to Dataverse contacts (the example of a second mapping on customers)."""
    mapping = TableMapping.objects.create(
        name="CUSTOMER_PERSON",
        bc_entity_set="customers",
        dataverse_entity_set="contacts",
        dataverse_primary_key="contactid",
        bc_name_field="displayName",
        dataverse_name_field="fullname",
        direction="to_dataverse",
        table_filter=table_filter,
        integration_table_filter="statecode eq 0",
        record_priority=priority,
        sync_only_coupled=False,
    )
    mapping.field_mappings.create(bc_field="displayName", dataverse_field="lastname", direction="to_dataverse")
    mapping.field_mappings.create(bc_field="email", dataverse_field="emailaddress1", direction="to_dataverse")
    return mapping


def _errors(response) -> list[str]:
    return re.findall(r"errorlist[^>]*>(.*?)</ul>", response.content.decode(), re.S)


def test_overlapping_mappings_on_one_table_are_refused_when_saved(admin_client, sandbox_connections, change_form):
    _persons_mapping(priority=0)
    url, data = change_form.data(admin_client, "CUSTOMER")
    assert data["record_priority"] == "0"
    before = configuration_snapshot()

    response = admin_client.post(url, data)  # same priority as CUSTOMER_PERSON: which one owns a person?
    assert response.status_code == 200
    assert "CUSTOMER_PERSON also synchronizes Business Central customers with record priority 0" in str(
        _errors(response)
    )

    data["record_priority"] = "1"
    data["table_filter"] = "blocked eq ' '"
    TableMapping.objects.filter(name="CUSTOMER_PERSON").update(table_filter="")
    response = admin_client.post(url, data)  # the earlier mapping has no filter: CUSTOMER would get nothing
    assert response.status_code == 200
    assert "CUSTOMER_PERSON comes first on Business Central customers (record priority 0) and has no table filter" in (
        str(_errors(response))
    )
    assert configuration_snapshot() == before | {"CUSTOMER_PERSON": configuration_snapshot()["CUSTOMER_PERSON"]}
    assert TableMapping.objects.get(name="CUSTOMER").record_priority == 0

    TableMapping.objects.filter(name="CUSTOMER_PERSON").update(table_filter="blocked eq ' ' and type eq 'Person'")
    response = admin_client.post(url, data)  # ordered and narrower first: accepted
    assert response.status_code == 302, _errors(response)
    assert TableMapping.objects.get(name="CUSTOMER").record_priority == 1


def test_each_record_goes_to_the_first_mapping_whose_filter_it_matches(
    sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    with open_client(sandbox_connections[0]) as bc:
        created = bc.write_many(
            [
                WriteOperation("create", "customers", str(n), {"displayName": f"Person {n}", "type": "Person"})
                for n in range(3)
            ]
        )
        assert all(result.ok for result in created)
    persons = _persons_mapping(priority=0)
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    TableMapping.objects.filter(pk=customer.pk).update(record_priority=1, sync_only_coupled=False)
    customer.refresh_from_db()

    for mapping in (customer, persons):
        with django_capture_on_commit_callbacks(execute=True):
            jobs = sync_enqueue(mapping=mapping, direction="to_dataverse")
        rq_worker()
        assert all(SyncJob.objects.get(pk=j.pk).status == JobStatus.SUCCEEDED for j in jobs)

    with open_client(sandbox_connections[0]) as bc:
        unblocked = {
            row["id"]: row["type"] for page in bc.read_pages("customers", filter="blocked eq ' '") for row in page.rows
        }
    people = {i for i, kind in unblocked.items() if kind == "Person"}
    assert len(people) == 3 and len(people) < len(unblocked)
    to_accounts = {str(c.bc_id) for c in Coupling.objects.filter(table_mapping=customer)}
    to_contacts = {str(c.bc_id) for c in Coupling.objects.filter(table_mapping=persons)}
    assert to_contacts == people  # every person went to contacts...
    assert to_accounts == set(unblocked) - people  # ...and no person was also made an account

"""Coupling and error resolution, clicked through in the real admin."""

import pytest
from playwright.sync_api import expect

from connectors.clients import open_client
from coupling.models import AmbiguousMatch, Coupling
from jobs.choices import JobStatus
from jobs.models import SyncJob
from mappings.models import TableMapping
from sandbox import testing as sandbox_testing

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, databases=["default", "sandbox"])]


def rows(connection, entity_set, filter=None):
    with open_client(connection) as client:
        return [row for page in client.read_pages(entity_set, filter=filter) for row in page.rows]


def test_couple_two_records_by_clicking_then_synchronize_now_and_see_the_result(page, lookups_coupled, rq_worker):
    bc, dataverse = lookups_coupled
    customer = TableMapping.objects.get(name="CUSTOMER")
    bc_names = {row["displayName"]: row for row in rows(bc, "customers", "blocked eq ' '")}
    dv_names = {row["name"]: row for row in rows(dataverse, "accounts", "statecode eq 0 and customertypecode eq 3")}
    name = sorted(set(bc_names) & set(dv_names))[0]  # the seed shares a few names between the systems
    blocked = rows(bc, "customers", "blocked ne ' '")[0]["displayName"]

    page.goto(f"/admin/mappings/tablemapping/{customer.pk}/change/")
    page.click("text=Couple records")
    page.check("input[name=outside]")
    page.click("#search input[type=submit]")
    # A blocked customer is outside the mapping's table filter: shown, not offered, and the page says why.
    blocked_row = page.locator("#bc-records tr", has_text=blocked)
    expect(blocked_row).to_contain_text("Outside the mapping's filter: cannot be coupled")
    expect(blocked_row.locator("a.pick")).to_have_count(0)
    page.shot("couple-1-lists")

    page.locator("#bc-records tr", has_text=name).locator("a.pick").click()
    # The Dataverse row of the same name is suggested (no match criteria yet: by name).
    suggestion = page.locator("#suggestions tr", has_text=name)
    expect(suggestion).to_contain_text("same name")
    page.shot("couple-2-suggestions")
    suggestion.locator("a.pick").click()
    page.check("input[name=sync][value=to_dataverse]")
    page.shot("couple-3-ready")
    page.click("input[name=couple]")

    expect(page.locator("ul.messagelist")).to_contain_text(f"Coupled {name} with {name}")
    coupling = Coupling.objects.get(table_mapping=customer)
    assert str(coupling.bc_id) == bc_names[name]["id"]
    assert str(coupling.dataverse_id) == dv_names[name]["accountid"]

    rq_worker()
    page.reload()
    job = SyncJob.objects.get(table_mapping=customer, kind="records")
    assert job.status == JobStatus.SUCCEEDED, job.message
    expect(page.locator("#content")).to_contain_text("Succeeded")
    page.shot("couple-4-job-result")
    # The Dataverse row now holds the Business Central values of the synchronized fields.
    account = rows(dataverse, "accounts", f"accountid eq {coupling.dataverse_id}")[0]
    assert account["telephone1"] == bc_names[name]["phoneNumber"]


def test_match_based_coupling_then_couple_an_ambiguous_match_from_its_candidates(page, live_connections, rq_worker):
    bc, dataverse = live_connections
    customer = TableMapping.objects.get(name="CUSTOMER")
    shared = sorted(
        {row["displayName"] for row in rows(bc, "customers", "blocked eq ' '")}
        & {row["name"] for row in rows(dataverse, "accounts", "statecode eq 0 and customertypecode eq 3")}
    )
    # A second Dataverse account with the name of a shared customer makes that customer's match ambiguous.
    twin = shared[0]
    sandbox_testing.create_as_another_user("dataverse", "accounts", name=twin, customertypecode=3)

    page.goto(f"/admin/mappings/tablemapping/{customer.pk}/change/")
    page.click("text=Match-based coupling")
    page.locator("#criteria tr[data-field=displayName] input[name$=use_for_matching]").check()
    page.shot("match-1-criteria")
    page.click("#criteria input[type=submit]")
    expect(page.locator("ul.messagelist")).to_contain_text("Match-based coupling of CUSTOMER queued")
    rq_worker()

    job = SyncJob.objects.get(table_mapping=customer, kind="coupling")
    assert job.status == JobStatus.PARTLY_FAILED, job.message  # the ambiguous record counts as failed
    assert job.coupled == len(shared) - 1  # every shared name but the twin's
    page.goto(f"/admin/mappings/tablemapping/{customer.pk}/match-coupling/")
    ambiguous_row = page.locator("#ambiguous + table tr", has_text=twin)
    expect(ambiguous_row.locator("button")).to_have_count(2)
    page.shot("match-2-ambiguous")

    ambiguous_row.locator("button").first.click()
    expect(page.locator("ul.messagelist")).to_contain_text(f"Coupled {twin} with {twin}")
    assert not AmbiguousMatch.objects.filter(table_mapping=customer).exists()
    assert Coupling.objects.filter(table_mapping=customer, bc_name=twin).count() == 1
    assert Coupling.objects.filter(table_mapping=customer).count() == len(shared)

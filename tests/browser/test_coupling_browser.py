"""Coupling and error resolution, clicked through in the real admin."""

import pytest
from playwright.sync_api import expect

from connectors.clients import open_client
from coupling.models import AmbiguousMatch, Coupling
from coupling.services import coupling_create
from jobs.choices import JobKind, JobStatus
from jobs.models import SyncError, SyncJob
from jobs.services import sync_enqueue
from mappings.choices import Direction
from mappings.models import TableMapping
from sandbox import testing as sandbox_testing

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "sandbox"]),
]


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

    page.goto("/admin/mappings/tablemapping/")
    page.shot("mappings-list")
    page.goto(f"/admin/mappings/tablemapping/{customer.pk}/change/")
    page.shot("mapping-form")
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
    page.goto(f"/admin/coupling/coupling/?table_mapping={customer.pk}")
    expect(page.locator("#result_list")).to_contain_text(name)
    page.shot("couple-5-coupling-list")
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
    twin_customer = next(row["id"] for row in rows(bc, "customers", "blocked eq ' '") if row["displayName"] == twin)
    sandbox_testing.create_as_another_user("dataverse", "accounts", name=twin, customertypecode=3)

    page.goto(f"/admin/mappings/tablemapping/{customer.pk}/change/")
    page.click("text=Match-based coupling")
    page.locator("#criteria tr[data-field=displayName] input[name$=use_for_matching]").check()
    page.shot("match-1-criteria")
    page.click("#criteria input[type=submit]")
    # It asks first, with the pairs it would couple now (read live; the criteria are saved only on Yes).
    expect(page.locator("table.bulk-rows tbody tr td").nth(1)).to_have_text(str(len(shared) - 1))
    page.shot("match-1b-confirm")
    page.click("form.bulk-confirm input[type=submit]")
    expect(page.locator("ul.messagelist")).to_contain_text("Match-based coupling of CUSTOMER queued")
    rq_worker()

    job = SyncJob.objects.get(table_mapping=customer, kind="coupling")
    assert job.status == JobStatus.PARTLY_FAILED, job.message  # the ambiguous record counts as failed
    assert job.coupled == len(shared) - 1  # every shared name but the twin's
    page.goto(f"/admin/mappings/tablemapping/{customer.pk}/match-coupling/")
    # The customer and both accounts of its name are ambiguous (three records, each listed); the customer's row
    # offers its two candidates.
    assert AmbiguousMatch.objects.filter(table_mapping=customer).count() == 3 == job.failed
    ambiguous_row = page.locator(f"#ambiguous + table tr#record-{twin_customer}")
    expect(ambiguous_row.locator("button")).to_have_count(2)
    page.shot("match-2-ambiguous")

    ambiguous_row.locator("button").first.click()
    expect(page.locator("ul.messagelist")).to_contain_text(f"Coupled {twin} with {twin}")
    # The pair leaves the list; the other account stays, its one candidate coupled now (as the other of two twins).
    assert [m.side for m in AmbiguousMatch.objects.filter(table_mapping=customer)] == ["dataverse"]
    assert Coupling.objects.filter(table_mapping=customer, bc_name=twin).count() == 1
    assert Coupling.objects.filter(table_mapping=customer).count() == len(shared)


def test_resolve_a_conflict_field_by_field_then_filter_the_errors_and_retry_by_class(page, lookups_coupled, rq_worker):
    bc, dataverse = lookups_coupled
    customer = TableMapping.objects.get(name="CUSTOMER")
    bc_rows = {row["displayName"]: row for row in rows(bc, "customers", "blocked eq ' '")}
    dv_rows = {row["name"]: row for row in rows(dataverse, "accounts", "statecode eq 0 and customertypecode eq 3")}
    name = sorted(set(bc_rows) & set(dv_rows))[0]
    bc_id, dv_id = bc_rows[name]["id"], dv_rows[name]["accountid"]
    coupling = coupling_create(mapping=customer, bc_id=bc_id, dataverse_id=dv_id, bc_name=name, dataverse_name=name)
    sync_enqueue(mapping=customer, kind=JobKind.RECORDS, direction=Direction.TO_DATAVERSE, record_ids=[bc_id])
    rq_worker()
    # Both sides change the same two fields before the next run: an update conflict (the mapping has no policy).
    sandbox_testing.edit_as_another_user("bc", "customers", bc_id, phoneNumber="0111 111", city="Bctown")
    sandbox_testing.edit_as_another_user("dataverse", "accounts", dv_id, telephone1="0222 222", address1_city="Dvtown")
    sync_enqueue(mapping=customer, kind=JobKind.MODIFIED)
    rq_worker()
    assert SyncError.objects.filter(error_class="conflict", table_mapping=customer).exists()

    page.goto("/admin/jobs/syncerror/")
    page.select_option("#id_error_class", "conflict")
    page.click(".filterset-form input[type=submit]")
    expect(page.locator("#result_list tbody tr").first).to_contain_text("Update conflict")
    page.shot("errors-1-filtered")
    page.locator("#result_list tbody tr th a").first.click()
    expect(page.locator("#explanation")).to_contain_text("changed in both systems")
    page.shot("errors-2-detail")

    page.click("text=Resolve the conflict field by field")
    page.locator("tr[data-field=phoneNumber] input[value=bc]").check()
    page.locator("tr[data-field=city] input[value=dataverse]").check()
    page.shot("conflict-1-choose")
    page.click("input[name=resolve]")
    expect(page.locator("ul.messagelist")).to_contain_text("Resolved")
    expect(page.locator("tr[data-field=phoneNumber]")).not_to_have_class("differs")
    page.shot("conflict-2-resolved")
    account = rows(dataverse, "accounts", f"accountid eq {dv_id}")[0]
    bc_customer = rows(bc, "customers", f"id eq {bc_id}")[0]
    assert (account["telephone1"], account["address1_city"]) == ("0111 111", "Dvtown")
    assert (bc_customer["phoneNumber"], bc_customer["city"]) == ("0111 111", "Dvtown")

    # The conflict's errors left the list of what is wrong now; the history shows them resolved by hand.
    page.goto(f"/admin/jobs/syncerror/?error_class=conflict&table_mapping={customer.pk}")
    expect(page.locator("#result_list")).to_have_count(0)
    page.goto(f"/admin/jobs/syncerror/?error_class=conflict&table_mapping={customer.pk}&state=all")
    expect(page.locator("#result_list tbody tr").first).to_contain_text("Resolved by hand")
    # Retry every conflict error of the mapping (from the history): the records synchronize cleanly now.
    page.click("#retry-class button")
    # Retrying in bulk asks first, with how many records each mapping and direction synchronizes again.
    expect(page.locator("p.bulk-question")).to_contain_text("record(s) again now")
    page.shot("errors-3-confirm-retry")
    page.click("form.bulk-confirm input[type=submit]")
    expect(page.locator("ul.messagelist")).to_contain_text("Synchronizing the records of these errors again")
    page.shot("errors-3-retried")
    retry_jobs = list(SyncJob.objects.filter(table_mapping=customer, kind=JobKind.RECORDS, status=JobStatus.QUEUED))
    assert {job.direction for job in retry_jobs} == {Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE}
    rq_worker()
    for job in retry_jobs:
        job.refresh_from_db()
        assert (job.status, job.failed) == (JobStatus.SUCCEEDED, 0), job.message
    coupling.refresh_from_db()
    assert not coupling.skipped

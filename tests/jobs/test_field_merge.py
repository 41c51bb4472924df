"""Field-level merge end to end: real RQ worker, real HTTP into the sandbox, real database.

Business Central reports an update conflict whenever both records changed since the last synchronization
(https://learn.microsoft.com/en-us/dynamics365/business-central/admin-synchronizing-business-central-and-sales#resolve-update-conflicts).
Here each coupling keeps a fingerprint of what was last synchronized per field, so only a field both sides changed
to different values is a conflict.
"""

import json

import pytest
from django.urls import reverse

from coupling.models import Coupling
from jobs.models import SyncError, SyncJob
from mappings.choices import UpdateConflictResolution
from mappings.models import FieldMapping
from sandbox import testing as sandbox
from tests.jobs.test_sync_rules import account, bc_customer, customer, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def first_coupling(mapping) -> Coupling:
    return Coupling.objects.filter(table_mapping=mapping).order_by("pk").first()


def test_different_fields_changed_on_each_side_merge_without_conflict(customer, run, sandbox_connections):  # noqa: F811
    coupling = first_coupling(customer)
    assert coupling.synced_fields, "the first synchronization recorded what it synchronized"
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht")
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="+31 30 123 4567")

    to_dataverse, from_dataverse = run(customer)

    assert (to_dataverse.failed, from_dataverse.failed) == (0, 0)
    assert not SyncError.objects.exists()
    assert (to_dataverse.modified, from_dataverse.modified) == (1, 1)
    for record in (account(sandbox_connections, coupling.dataverse_id),):
        assert (record["address1_city"], record["telephone1"]) == ("Utrecht", "+31 30 123 4567")
    record = bc_customer(sandbox_connections, coupling.bc_id)
    assert (record["city"], record["phoneNumber"]) == ("Utrecht", "+31 30 123 4567")

    # Our own writes are not changes: the next run writes nothing.
    again = run(customer)
    assert [(job.modified, job.failed) for job in again] == [(0, 0), (0, 0)]


def test_the_same_field_changed_on_both_sides_is_a_conflict_with_both_values_and_nothing_overwritten(
    customer,  # noqa: F811
    run,  # noqa: F811
    sandbox_connections,
):
    coupling = first_coupling(customer)
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht", phoneNumber="+31 1")
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, address1_city="Leiden")

    to_dataverse, from_dataverse = run(customer)

    assert (to_dataverse.failed, from_dataverse.failed) == (1, 1)
    error = SyncError.objects.get(job=to_dataverse)
    assert error.error_class == "conflict"
    assert "address1_city" in error.message and "'Utrecht'" in error.message and "'Leiden'" in error.message
    assert "telephone1:" not in error.message, "a field changed on one side only is no conflict"
    assert account(sandbox_connections, coupling.dataverse_id)["address1_city"] == "Leiden"
    assert account(sandbox_connections, coupling.dataverse_id)["telephone1"] == "+31 1", (
        "the conflict held back city only"
    )
    assert bc_customer(sandbox_connections, coupling.bc_id)["city"] == "Utrecht"

    # Still a conflict at the next run: nothing was recorded as synchronized.
    again, _ = run(customer)
    assert again.failed == 1
    assert account(sandbox_connections, coupling.dataverse_id)["address1_city"] == "Leiden"


def test_a_field_policy_resolves_only_its_field_and_the_rest_merges(customer, run, sandbox_connections):  # noqa: F811
    customer.field_mappings.filter(bc_field="city").update(
        update_conflict_resolution=UpdateConflictResolution.GET_FROM_DATAVERSE
    )
    coupling = first_coupling(customer)
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht", phoneNumber="+31 1")
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, address1_city="Leiden")

    jobs = run(customer)

    assert sum(job.failed for job in jobs) == 0
    record = bc_customer(sandbox_connections, coupling.bc_id)
    assert (record["city"], record["phoneNumber"]) == ("Leiden", "+31 1")
    row = account(sandbox_connections, coupling.dataverse_id)
    assert (row["address1_city"], row["telephone1"]) == ("Leiden", "+31 1")


def test_the_same_field_changed_on_both_sides_to_the_same_value_is_no_conflict(customer, run, sandbox_connections):  # noqa: F811
    coupling = first_coupling(customer)
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht", phoneNumber="+31 1")
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, address1_city="Utrecht")

    jobs = run(customer)

    assert sum(job.failed for job in jobs) == 0
    assert account(sandbox_connections, coupling.dataverse_id)["telephone1"] == "+31 1"
    again = run(customer)
    assert [(job.modified, job.failed) for job in again] == [(0, 0), (0, 0)]


def test_a_coupling_from_before_the_merge_behaves_as_business_central_until_it_syncs(
    customer,  # noqa: F811
    run,  # noqa: F811
    sandbox_connections,
):
    coupling = first_coupling(customer)
    Coupling.objects.filter(table_mapping=customer).update(synced_fields={})  # as coupled before this change
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht")
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="+31 2")

    to_dataverse, _ = run(customer)
    assert to_dataverse.failed == 1 and SyncError.objects.get(job=to_dataverse).error_class == "conflict"

    # Resolved as BC does (one side wins); that successful sync records the fields, and from then on it merges.
    customer.update_conflict_resolution = UpdateConflictResolution.SEND_TO_DATAVERSE
    customer.save()
    assert sum(job.failed for job in run(customer)) == 0
    coupling.refresh_from_db()
    assert coupling.synced_fields
    customer.update_conflict_resolution = UpdateConflictResolution.NONE
    customer.save()
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Gouda")
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="+31 3")
    assert sum(job.failed for job in run(customer)) == 0
    record = bc_customer(sandbox_connections, coupling.bc_id)
    assert (record["city"], record["phoneNumber"]) == ("Gouda", "+31 3")


def test_a_preview_shows_merged_fields_and_conflicts_apart(customer, run, sandbox_connections, admin_client):  # noqa: F811
    couplings = list(Coupling.objects.filter(table_mapping=customer).order_by("pk")[:2])
    merging, conflicting = couplings
    sandbox.edit_as_another_user("bc", "customers", merging.bc_id, city="Utrecht")
    sandbox.edit_as_another_user("dataverse", "accounts", merging.dataverse_id, telephone1="+31 4")
    sandbox.edit_as_another_user("bc", "customers", conflicting.bc_id, city="Delft")
    sandbox.edit_as_another_user("dataverse", "accounts", conflicting.dataverse_id, address1_city="Breda")

    (preview,) = run(customer, direction="to_dataverse", dry_run=True)

    counts = preview.preview["counts"]
    # Merged fields are shown apart, not as an outcome of their own: the merged record is the one update.
    assert (counts["update"], counts["conflicts"], preview.preview["merged"]["records"]) == (1, 1, 1)
    assert "merged" not in counts
    by_record = {item["record_id"]: item for item in preview.preview["sample"]}
    merged = by_record[str(merging.bc_id)]
    assert merged["merged"] == ["telephone1"]
    assert [d["field"] for d in merged["diffs"]] == ["address1_city"]
    conflict = by_record[str(conflicting.bc_id)]
    assert conflict["conflicts"] == [{"field": "address1_city", "source": "Delft", "target": "Breda"}]
    assert account(sandbox_connections, merging.dataverse_id)["address1_city"] != "Utrecht"

    page = admin_client.get(reverse("admin:jobs_syncjob_progress", args=[preview.pk])).content.decode()
    merged_table = page.split('class="preview-merged"')[1].split("</table>")[0]
    assert "telephone1" in merged_table and "address1_city" not in merged_table
    conflicts_table = page.split('class="preview-conflicts"')[1].split("</table>")[0]
    assert "address1_city" in conflicts_table and "Delft" in conflicts_table and "Breda" in conflicts_table


def test_the_stored_size_per_coupling_is_small(customer):  # noqa: F811
    """What the README quotes: the bytes of what was last synchronized, per CUSTOMER coupling."""
    sizes = [len(json.dumps(c.synced_fields)) for c in Coupling.objects.filter(table_mapping=customer)]
    assert sizes and max(sizes) < 1000
    print(f"synced_fields per CUSTOMER coupling: {max(sizes)} bytes (JSON)")
    assert SyncJob.objects.exists()


def test_a_conflict_on_one_field_holds_back_that_field_only_and_is_resolved_by_hand(
    customer,  # noqa: F811
    run,  # noqa: F811
    sandbox_connections,
    admin_client,
):
    """Business Central changes city and phone, Dataverse the phone to another value: the city flows, the phone is a
    conflict with both values, untouched on both sides, until a person chooses on the conflict page."""
    coupling = first_coupling(customer)
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht", phoneNumber="+31 5")
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="+31 6")

    to_dataverse, from_dataverse = run(customer)

    row = account(sandbox_connections, coupling.dataverse_id)
    assert (row["address1_city"], row["telephone1"]) == ("Utrecht", "+31 6")
    record = bc_customer(sandbox_connections, coupling.bc_id)
    assert (record["city"], record["phoneNumber"]) == ("Utrecht", "+31 5")
    # Counted as failed (it still needs a person), and the failed count matches the job's error list.
    assert (to_dataverse.failed, to_dataverse.modified) == (1, 0)
    assert to_dataverse.counts_reconcile and from_dataverse.counts_reconcile
    (error,) = SyncError.objects.filter(job=to_dataverse).open()
    assert error.error_class == "conflict"
    assert "telephone1: Business Central has '+31 5', Dataverse has '+31 6'" in error.message
    assert "address1_city:" not in error.message and "written to Dataverse: address1_city" in error.message
    assert "telephone1: '+31 6' -> '+31 5' (conflict, not written)" in error.detail
    # The coupling (its list and page) says the record is not synchronized, with the conflict, in that direction.
    coupling.refresh_from_db()
    assert coupling.last_result_to_dataverse == "failure" and "telephone1" in coupling.last_error_to_dataverse
    open_errors = SyncError.objects.filter(table_mapping=customer).open()
    assert {e.error_class for e in open_errors} == {"conflict"}
    assert all("phone" in e.message.lower() and "city:" not in e.message for e in open_errors)
    # One open conflict per direction that met it (each pass reports the phone), as many as the jobs' failed.
    assert open_errors.count() == to_dataverse.failed + from_dataverse.failed

    # Written fields are remembered as synchronized, the conflicting one is not: the next run still sees the
    # conflict on the phone, writes nothing, and the city is no change of either side.
    again = run(customer)
    assert [(job.modified, job.failed) for job in again] == [(0, 1), (0, 1)]
    assert account(sandbox_connections, coupling.dataverse_id)["telephone1"] == "+31 6"
    assert bc_customer(sandbox_connections, coupling.bc_id)["phoneNumber"] == "+31 5"

    still_open = list(SyncError.objects.filter(table_mapping=customer).open().values_list("pk", flat=True))
    assert len(still_open) == 2
    phone = FieldMapping.objects.get(table_mapping=customer, bc_field="phoneNumber").pk
    response = admin_client.post(
        reverse("admin:coupling_coupling_compare", args=[coupling.pk]),
        {"resolve": "1", f"winner_{phone}": "dataverse"},
        follow=True,
    )
    assert "Resolved: wrote" in response.content.decode()
    assert (
        bc_customer(sandbox_connections, coupling.bc_id)["phoneNumber"],
        account(sandbox_connections, coupling.dataverse_id)["telephone1"],
    ) == ("+31 6", "+31 6")
    assert not SyncError.objects.filter(table_mapping=customer).open().exists()
    assert set(SyncError.objects.filter(pk__in=still_open).values_list("state", flat=True)) == {"resolved_by_hand"}

    after = run(customer)
    assert [(job.inserted, job.modified, job.failed) for job in after] == [(0, 0, 0), (0, 0, 0)]
    assert not SyncError.objects.filter(table_mapping=customer).open().exists()


def test_a_preview_of_a_held_back_conflict_shows_the_fields_it_would_write_and_the_conflict(
    customer,  # noqa: F811
    run,  # noqa: F811
    sandbox_connections,
):
    coupling = first_coupling(customer)
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht", phoneNumber="+31 5")
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="+31 6")

    (preview,) = run(customer, direction="to_dataverse", dry_run=True)

    assert preview.preview["counts"].get("conflicts") == 1 and "update" not in preview.preview["counts"]
    (item,) = [i for i in preview.preview["sample"] if i["record_id"] == str(coupling.bc_id)]
    assert [d["field"] for d in item["diffs"]] == ["address1_city"]
    assert item["conflicts"] == [{"field": "telephone1", "source": "+31 5", "target": "+31 6"}]
    assert account(sandbox_connections, coupling.dataverse_id)["address1_city"] != "Utrecht"

    # A preview of both directions counts what the real run then counts: a conflict in each direction's pass.
    previews = run(customer, dry_run=True)
    real = run(customer)
    assert [p.preview["counts"].get("conflicts") for p in previews] == [job.failed for job in real] == [1, 1]
    assert [p.preview["counts"].get("update", 0) for p in previews] == [job.modified for job in real] == [0, 0]
    assert account(sandbox_connections, coupling.dataverse_id)["address1_city"] == "Utrecht"

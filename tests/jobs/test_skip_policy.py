"""The skip policy per error class and mapping, and automatic un-skipping, end to end (real RQ worker, real HTTP
into the sandbox, real database).

Business Central skips a record after two identical failures and keeps it skipped until someone retries it
(https://learn.microsoft.com/en-us/dynamics365/business-central/admin-how-to-couple-and-synchronize-records-manually#retry-or-skip-synchronization-errors).
Transient failures are never skipped: tests/jobs/test_sync_rules.py
(test_a_record_failing_twice_with_the_same_transient_error_is_not_skipped_and_the_next_run_retries_it).
"""

import pytest
from django.urls import reverse

from connectors.clients import open_client
from coupling.models import Coupling
from coupling.services import coupling_create
from jobs.models import SyncError
from mappings.choices import UpdateConflictResolution
from mappings.models import TableMapping
from mappings.validation import check_skip_policy
from sandbox import testing as sandbox
from tests.jobs.test_sync_rules import bc_customer, customer, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

TOO_LONG = "+31 20 555 0100 1234 5678 9012 3456"  # fits Dataverse (50), not Business Central (30)


@pytest.fixture
def failing_phone(customer):  # noqa: F811
    """One coupled record whose phone, from Dataverse, Business Central refuses (a permanent validation error)."""
    customer.update_conflict_resolution = UpdateConflictResolution.GET_FROM_DATAVERSE
    customer.save()
    customer.field_mappings.filter(bc_field="phoneNumber").update(direction="from_dataverse")
    coupling = Coupling.objects.filter(table_mapping=customer).order_by("pk").first()
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1=TOO_LONG)
    return coupling


def runs_until_skipped(mapping, run, coupling, attempts):  # noqa: F811
    skipped_at = []
    for attempt in range(1, attempts + 1):
        (job,) = run(mapping, direction="from_dataverse")
        assert job.failed == 1, attempt
        coupling.refresh_from_db()
        if coupling.skipped:
            skipped_at.append(attempt)
    return skipped_at


def test_the_mappings_count_for_an_error_class_decides_when_a_record_is_skipped(
    customer,  # noqa: F811
    failing_phone,
    run,  # noqa: F811
    admin_client,
):
    TableMapping.objects.filter(pk=customer.pk).update(skip_after_failures={"validation": 3})
    customer.refresh_from_db()

    assert runs_until_skipped(customer, run, failing_phone, 3) == [3]
    error = SyncError.objects.filter(table_mapping=customer).order_by("-created_at", "-id").first()
    assert "skipped after 3 identical failure(s)" in error.detail
    page = admin_client.get(reverse("admin:coupling_coupling_change", args=[failing_phone.pk])).content.decode()
    assert "Skipped error class" in page and "validation" in page

    (job,) = run(customer, direction="from_dataverse")
    assert job.failed == 0  # skipped: left out


def test_a_count_of_zero_never_skips(customer, failing_phone, run):  # noqa: F811
    TableMapping.objects.filter(pk=customer.pk).update(skip_after_failures={"validation": 0})
    customer.refresh_from_db()
    assert runs_until_skipped(customer, run, failing_phone, 3) == []


def test_the_skip_policy_refuses_transient_classes_unknown_classes_and_bad_counts():
    assert check_skip_policy({"validation": 3, "conflict": 0}) == []
    assert "never skipped" in check_skip_policy({"throttled": 2})[0].message
    assert "no error class" in check_skip_policy({"typo": 2})[0].message
    assert "whole number" in check_skip_policy({"validation": -1})[0].message
    assert "whole number" in check_skip_policy({"validation": "2"})[0].message
    assert "JSON object" in check_skip_policy([1])[0].message


def test_the_error_classes_named_by_the_policy_are_the_engines():
    from jobs.choices import ErrorClass
    from mappings.choices import PERMANENT_ERROR_CLASSES, TRANSIENT_ERROR_CLASSES

    assert set(PERMANENT_ERROR_CLASSES) | set(TRANSIENT_ERROR_CLASSES) == set(ErrorClass.values)


def test_a_skipped_record_is_unskipped_when_a_field_mapping_changes(customer, failing_phone, run, sandbox_connections):  # noqa: F811
    assert runs_until_skipped(customer, run, failing_phone, 2) == [2]
    (job,) = run(customer, direction="from_dataverse")
    assert job.failed == 0

    phone = customer.field_mappings.get(bc_field="phoneNumber")
    phone.transformation = [{"rule": "substring", "start": 1, "length": 30}]
    phone.save()  # the fix: what the admin's inline does

    (job,) = run(customer, direction="from_dataverse")
    failing_phone.refresh_from_db()
    assert (job.modified, job.failed) == (1, 0) and not failing_phone.skipped
    assert bc_customer(sandbox_connections, failing_phone.bc_id)["phoneNumber"] == TOO_LONG[:30]
    error = SyncError.objects.filter(table_mapping=customer).order_by("-created_at", "-id").first()
    assert "un-skipped automatically: the mapping or one of its field mappings was changed" in error.detail


def test_a_skipped_record_is_unskipped_when_its_target_record_changes(customer, failing_phone, run):  # noqa: F811
    assert runs_until_skipped(customer, run, failing_phone, 2) == [2]
    (job,) = run(customer, direction="from_dataverse")
    assert job.failed == 0

    sandbox.edit_as_another_user("bc", "customers", failing_phone.bc_id, city="Zwolle")

    (job,) = run(customer, direction="from_dataverse")
    failing_phone.refresh_from_db()
    assert job.failed == 1 and not failing_phone.skipped  # retried (the cause is not gone: a fresh count)
    errors = SyncError.objects.filter(table_mapping=customer).order_by("-created_at", "-id")
    assert "un-skipped automatically: its Business Central record was changed" in errors[1].detail


def test_a_record_skipped_for_a_missing_dependency_is_unskipped_once_the_dependency_is_coupled(
    sandbox_connections,
    run,  # noqa: F811
):
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.field_mappings.filter(lookup_mapping__name="CURRENCY").update(enabled=False)
    mapping.sync_only_coupled = False
    mapping.save()
    TableMapping.objects.filter(pk=mapping.pk).update(direction="to_dataverse")
    mapping.refresh_from_db()
    for _ in range(2):
        (job,) = run(mapping)
    failed = Coupling.objects.filter(table_mapping=mapping, skipped=True, skipped_error_class="missing_dependency")
    assert failed.exists()
    (job,) = run(mapping)
    assert job.failed == 0  # all skipped now

    # Couple every salesperson the skipped customers name to a Dataverse user: the dependency is fixed.
    with open_client(sandbox_connections[0]) as bc, open_client(sandbox_connections[1]) as dataverse:
        codes = {bc.read_by_ids("customers", [c.bc_id])[c.bc_id]["salespersonCode"] for c in failed}
        people = [row for page in bc.read_pages("salespeoplePurchasers") for row in page.rows if row["code"] in codes]
        users = [row for page in dataverse.read_pages("systemusers") for row in page.rows]
    salespeople = TableMapping.objects.get(name="SALESPEOPLE")
    for person, user in zip(people, users, strict=False):
        coupling_create(mapping=salespeople, bc_id=person["id"], dataverse_id=user["systemuserid"])
    skipped = failed.count()

    (job,) = run(mapping)

    assert job.inserted == skipped and job.failed == 0
    assert not Coupling.objects.filter(table_mapping=mapping, skipped=True).exists()
    error = SyncError.objects.filter(table_mapping=mapping, error_class="missing_dependency").first()
    assert "un-skipped automatically: a record of a mapping it depends on was coupled" in error.detail

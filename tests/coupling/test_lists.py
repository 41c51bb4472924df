"""The coupling and error lists: every FilterSet filter narrows the list as its label says, and a page costs the
same few queries however many rows there are."""

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from coupling.filters import coupling_list
from coupling.models import Coupling
from jobs.filters import sync_error_list
from jobs.models import SyncError, SyncJob
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return TableMapping.objects.get(name="CUSTOMER")


def make_couplings(mapping, n, **values):
    return Coupling.objects.bulk_create(
        [
            Coupling(
                table_mapping=mapping,
                bc_id=uuid.uuid4(),
                dataverse_id=uuid.uuid4(),
                bc_name=f"Customer {i}",
                dataverse_name=f"Account {i}",
                **values,
            )
            for i in range(n)
        ]
    )


def make_errors(mapping, n, **values):
    job = SyncJob.objects.create(table_mapping=mapping, direction="to_dataverse")
    defaults = {"error_class": "validation", "message": "name is too long", "direction": "to_dataverse"}
    return SyncError.objects.bulk_create(
        [
            SyncError(
                job=job, table_mapping=mapping, bc_id=uuid.uuid4(), bc_name=f"Customer {i}", **{**defaults, **values}
            )
            for i in range(n)
        ]
    )


def test_coupling_filters_narrow_by_mapping_skipped_last_result_and_name_or_id(customer):
    vendor = TableMapping.objects.get(name="VENDOR")
    plain = make_couplings(customer, 3)
    skipped = make_couplings(vendor, 2, skipped=True, last_result_to_dataverse="failure")
    assert set(coupling_list(filters={"table_mapping": customer.pk})) == set(plain)
    assert set(coupling_list(filters={"skipped": "true"})) == set(skipped)
    assert set(coupling_list(filters={"to_dataverse": "failure"})) == set(skipped)
    assert set(coupling_list(filters={"to_dataverse": "none"})) == set(plain)
    assert set(coupling_list(filters={"text": "customer 1"})) == {plain[1], skipped[1]}
    assert list(coupling_list(filters={"text": str(plain[2].dataverse_id)})) == [plain[2]]


def test_error_filters_narrow_by_class_job_direction_dates_and_text(customer):
    validation = make_errors(customer, 2)
    conflicts = make_errors(customer, 2, error_class="conflict", direction="from_dataverse", message="changed in both")
    SyncError.objects.filter(pk=conflicts[0].pk).update(created_at=timezone.now() - timedelta(days=10))
    today = timezone.localdate()
    assert set(sync_error_list(filters={"error_class": "conflict"})) == set(conflicts)
    assert set(sync_error_list(filters={"job": validation[0].job_id})) == set(validation)
    assert set(sync_error_list(filters={"direction": "from_dataverse"})) == set(conflicts)
    assert set(sync_error_list(filters={"until": str(today - timedelta(days=5))})) == {conflicts[0]}
    assert conflicts[0] not in set(sync_error_list(filters={"since": str(today)}))
    assert set(sync_error_list(filters={"text": "both"})) == set(conflicts)


@pytest.mark.parametrize(
    ("url_name", "query", "make"),
    [
        ("admin:coupling_coupling_changelist", "?skipped=false&text=Customer", make_couplings),
        ("admin:jobs_syncerror_changelist", "?error_class=validation&text=long", make_errors),
    ],
)
def test_a_list_page_costs_the_same_queries_for_10_or_300_rows(admin_client, customer, url_name, query, make):
    url = reverse(url_name) + query
    make(customer, 10)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        assert admin_client.get(url).status_code == 200
    make(customer, 290)
    with CaptureQueriesContext(connection) as large:
        response = admin_client.get(url)
    assert response.status_code == 200
    assert len(large.captured_queries) == len(small.captured_queries)
    # No COUNT(*) of the whole table: the only count is the capped one over the filtered rows.
    counts = [q["sql"] for q in large.captured_queries if "COUNT(" in q["sql"].upper()]
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_the_mapping_list_and_form_link_to_couplings_errors_and_jobs(admin_client, customer):
    for url in (
        reverse("admin:mappings_tablemapping_changelist"),
        reverse("admin:mappings_tablemapping_change", args=[customer.pk]),
    ):
        html = admin_client.get(url).content.decode()
        assert f"/admin/coupling/coupling/?table_mapping={customer.pk}" in html
        assert f"/admin/jobs/syncerror/?table_mapping={customer.pk}" in html
        assert f"/admin/jobs/syncjob/?table_mapping__id__exact={customer.pk}" in html


def test_retry_by_class_synchronizes_again_every_record_with_an_error_of_that_class(admin_client, customer):
    conflicts = make_errors(customer, 3, error_class="conflict")
    make_errors(customer, 2, error_class="validation")
    skipped = Coupling.objects.create(table_mapping=customer, bc_id=conflicts[0].bc_id, skipped=True)
    url = reverse("admin:jobs_syncerror_changelist") + f"?table_mapping={customer.pk}"

    response = admin_client.post(
        url, {"action": "retry_error_classes", "_selected_action": [conflicts[0].pk], "confirm": "yes"}
    )

    assert response.status_code == 302
    (job,) = SyncJob.objects.filter(kind="records")
    assert (job.direction, sorted(job.record_ids)) == ("to_dataverse", sorted(str(e.bc_id) for e in conflicts))
    skipped.refresh_from_db()
    assert not skipped.skipped

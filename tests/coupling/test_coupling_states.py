"""A coupling's states for crash recovery: coupled, reserved (a write may have landed), failed reservation."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from coupling.models import Coupling

TO_DV = "to_dataverse"


def test_a_reservation_keeps_its_first_time_until_a_restore_starts_it_anew():
    coupling = Coupling(bc_id=uuid.uuid4())
    first = timezone.now()
    coupling.reserve(first)
    coupling.reserve(first + timedelta(minutes=5))
    assert coupling.reserved and coupling.reserved_at == first
    coupling.reserve(first + timedelta(minutes=9), restart=True)
    assert coupling.reserved_at == first + timedelta(minutes=9)


def test_a_success_couples_and_ends_the_reservation():
    coupling = Coupling(bc_id=uuid.uuid4(), last_error_to_dataverse="earlier")
    coupling.reserve(timezone.now())
    coupling.succeed(TO_DV, job_id=7)
    assert not coupling.pending and coupling.reserved_at is None and not coupling.reserved
    assert (coupling.last_result(TO_DV), coupling.last_error(TO_DV), coupling.last_job_to_dataverse) == (
        "success",
        "",
        7,
    )


def test_a_write_that_may_have_landed_stays_reserved_without_an_error_and_any_other_failure_ends_it():
    unknown = Coupling(bc_id=uuid.uuid4())
    unknown.reserve(timezone.now())
    unknown.fail(TO_DV, job_id=3, message="connection dropped", may_have_landed=True)
    assert unknown.reserved and unknown.last_error(TO_DV) == "" and unknown.last_result(TO_DV) == "failure"

    refused = Coupling(bc_id=uuid.uuid4())
    refused.reserve(timezone.now())
    refused.fail(TO_DV, job_id=3, message="invalid value", may_have_landed=False)
    assert refused.pending and not refused.reserved and refused.last_error(TO_DV) == "invalid value"


@pytest.mark.django_db
def test_only_failed_reservations_are_listed_as_such():
    from mappings.models import TableMapping

    mapping = TableMapping.objects.get(name="CUSTOMER")
    reserved = Coupling.objects.create(
        table_mapping=mapping, bc_id=uuid.uuid4(), pending=True, reserved_at=timezone.now()
    )
    failed = Coupling.objects.create(table_mapping=mapping, bc_id=uuid.uuid4(), pending=True)
    Coupling.objects.create(table_mapping=mapping, bc_id=uuid.uuid4())
    assert list(Coupling.objects.filter(table_mapping=mapping).failed_reservations()) == [failed]
    assert reserved.reserved

"""Every page counts ambiguous matches alike, as the records the two systems hold: a record of either system whose
match fields agree with more than one record, or whose one match other records share, is one ambiguous record. One
customer and two accounts of one name are three, as runs in both directions find them: the match-based coupling
job's page, its ambiguous list, the match page's preview and, after a synchronization, the open errors all say so.

The walk-through found a coupling job saying 6 where its list said 4: a target record of a shared name was listed
only when several sources shared its one match, and a later run took the listed records over as its own."""

import pytest
from django.urls import reverse

from connectors.clients import open_client
from coupling.models import AmbiguousMatch
from jobs.choices import ErrorClass, JobKind
from jobs.models import SyncError, SyncJob
from jobs.services import sync_jobs_create, sync_jobs_run
from mappings.models import TableMapping
from sandbox import testing as sandbox
from tests.jobs.test_bulk_confirmations import table

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


@pytest.fixture
def customer_matched_by_name(sandbox_connections):
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.sync_only_coupled = False
    mapping.save()
    mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    mapping.field_mappings.filter(bc_field="displayName").update(use_for_matching=True)
    return mapping


@pytest.fixture
def twins(customer_matched_by_name):
    """Two customers and one account named alike, and one customer and two accounts named alike."""
    for _ in range(2):
        sandbox.create_as_another_user("bc", "customers", displayName="Twin Trading")
        sandbox.create_as_another_user("dataverse", "accounts", name="Solo Works", customertypecode=3)
    sandbox.create_as_another_user("dataverse", "accounts", name="Twin Trading", customertypecode=3)
    sandbox.create_as_another_user("bc", "customers", displayName="Solo Works")


def ambiguous_in_the_systems(mapping, connections) -> set[tuple[str, str]]:
    """(system, record id) of every uncoupled record whose name, as the match compares it, is shared by more than one
    record of one system and found in the other: read from the two systems, under the mapping's filters."""
    bc, dataverse = connections
    by_name: dict[str, dict[str, list[str]]] = {}
    for connection, entity_set, flt, name, key, side in (
        (bc, "customers", mapping.table_filter, "displayName", "id", "business_central"),
        (dataverse, "accounts", mapping.dataverse_filter, "name", "accountid", "dataverse"),
    ):
        with open_client(connection) as client:
            for page in client.read_pages(entity_set, filter=flt or None):
                for row in page.rows:
                    if (row.get(name) or "").strip():
                        found = by_name.setdefault(
                            row[name].strip().casefold(), {"business_central": [], "dataverse": []}
                        )
                        found[side].append(str(row[key]).lower())
    return {
        (side, record_id)
        for sides in by_name.values()
        if sides["business_central"]
        and sides["dataverse"]
        and len(sides["business_central"]) + len(sides["dataverse"]) > 2
        for side, ids in sides.items()
        for record_id in ids
    }


def listed(**filters) -> set[tuple[str, str]]:
    return {(m.side, str(m.record_id)) for m in AmbiguousMatch.objects.filter(**filters)}


def run(jobs):
    sync_jobs_run(job_ids=[job.pk for job in jobs])
    return [SyncJob.objects.get(pk=job.pk) for job in jobs]


def test_the_coupling_job_its_list_the_match_preview_and_later_errors_count_the_same_ambiguous_records(
    customer_matched_by_name, twins, sandbox_connections, admin_client
):
    mapping = customer_matched_by_name
    expected = ambiguous_in_the_systems(mapping, sandbox_connections)
    assert len(expected) == 6  # the twins: 2 customers + 1 account, 1 customer + 2 accounts

    # The page that asks before match-based coupling says how many it would leave ambiguous.
    asked = admin_client.post(
        reverse("admin:mappings_tablemapping_changelist"),
        {"action": "run_match_based_coupling", "_selected_action": [mapping.pk]},
    ).content.decode()
    ((_, _, said_ambiguous, *_),) = table(asked)
    assert said_ambiguous == "6"

    (job,) = run([SyncJob.objects.create(kind=JobKind.COUPLING, table_mapping=mapping, direction=mapping.direction)])

    assert job.failed == 6 and listed(job_id=job.pk) == listed(table_mapping=mapping) == expected
    page = admin_client.get(reverse("admin:jobs_syncjob_change", args=[job.pk])).content.decode()
    assert "6 ambiguous records of this job" in page and ">6 still listed<" in page
    the_list = admin_client.get(reverse("admin:coupling_ambiguousmatch_changelist") + f"?job_id={job.pk}")
    assert the_list.context["cl"].result_count == 6
    assert job.counts_reconcile  # each record read is coupled (two a pair), ambiguous or without a match

    # A synchronization in both directions finds the same records ambiguous, each failing once, in its direction.
    runs = run(sync_jobs_create(mapping=mapping))
    assert sum(r.failed for r in runs) == 6
    open_errors = SyncError.objects.open().filter(table_mapping=mapping, error_class=ErrorClass.AMBIGUOUS_MATCH)
    assert {
        ("business_central", str(e.bc_id)) if e.bc_id else ("dataverse", str(e.dataverse_id)) for e in open_errors
    } == expected
    errors_list = admin_client.get(
        reverse("admin:jobs_syncerror_changelist") + f"?table_mapping={mapping.pk}&error_class=ambiguous_match"
    )
    assert errors_list.context["cl"].result_count == 6
    # ... and the coupling job still has them listed as its own: its page does not contradict the list.
    assert listed(job_id=job.pk) == expected
    page = admin_client.get(reverse("admin:jobs_syncjob_change", args=[job.pk])).content.decode()
    assert ">6 still listed<" in page


def test_a_preview_counts_the_ambiguous_and_the_couplings_by_match_that_the_run_then_makes(
    customer_matched_by_name, twins, sandbox_connections
):
    """The walk-through's preview said "Coupled 0" where the run coupled 6: now it says what the run does."""
    previews = run(sync_jobs_create(mapping=customer_matched_by_name, dry_run=True))
    runs = run(sync_jobs_create(mapping=customer_matched_by_name))

    assert sum(r.coupled for r in runs) > 0
    for preview, real in zip(previews, runs, strict=True):
        assert preview.preview["coupled"] == real.coupled, real.direction
        ambiguous = SyncError.objects.filter(job=real, error_class=ErrorClass.AMBIGUOUS_MATCH).count()
        assert preview.preview["ambiguous"] == ambiguous == 3, real.direction
        counts = preview.preview["counts"]
        assert counts.get("fail", 0) + counts.get("conflicts", 0) == real.failed
        assert (counts.get("insert", 0), counts.get("update", 0), counts.get("unchanged", 0)) == (
            real.inserted,
            real.modified,
            real.unchanged,
        )

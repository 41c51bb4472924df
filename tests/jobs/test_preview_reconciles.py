"""A preview's counts are what the real run that follows on the same data counts: each record read in one outcome
(a record whose other side's changes are merged is an update or unchanged, not counted again), merged fields and
conflicts shown apart, and the deletions the run would handle shown with what the mapping's policy does to them.
Real worker, real HTTP into the sandbox, real database."""

import pytest
from django.urls import reverse

from coupling.models import Coupling
from jobs.choices import JobStatus
from mappings.choices import DeletionPolicy
from mappings.models import TableMapping
from sandbox import testing as sandbox
from tests.jobs import test_sync_rules
from tests.jobs.test_bulk_confirmations import poll_url, table
from tests.jobs.test_sync_rules import bc_customer
from tests.previewing import run_previews

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

customer, run = test_sync_rules.customer, test_sync_rules.run  # the fixtures: CUSTOMER coupled, and running it

# A preview's count key -> the real run's counter it predicts ("fail" and "conflicts" are both failed records).
RUN_COUNTER = {
    "insert": "inserted",
    "update": "modified",
    "unchanged": "unchanged",
    "skip": "skipped",
    "uncouple": "uncoupled",
    "delete": "deleted",
}
READ_OUTCOMES = (
    "insert",
    "update",
    "unchanged",
    "skip",
    "fail",
    "conflicts",
    "uncouple",
    "delete",
)  # a deletion handled is a record read, as in the run


def predicted(preview) -> dict[str, int]:
    counts = preview.preview["counts"]
    said = {counter: counts.get(key, 0) for key, counter in RUN_COUNTER.items()}
    said["failed"] = counts.get("fail", 0) + counts.get("conflicts", 0)
    return said


def counted(job) -> dict[str, int]:
    return {counter: getattr(job, counter) for counter in [*RUN_COUNTER.values(), "failed"]}


@pytest.fixture
def edited(customer, sandbox_connections):
    """Between two runs: a pair merged field by field, a pair in conflict, a one-sided change, a deleted row."""
    pairs = list(Coupling.objects.filter(table_mapping=customer, pending=False).order_by("pk"))
    merged, conflict, one_sided, deleted = pairs[:4]
    sandbox.edit_as_another_user("bc", "customers", merged.bc_id, city="Utrecht")
    sandbox.edit_as_another_user("dataverse", "accounts", merged.dataverse_id, telephone1="+31 30 123 4567")
    sandbox.edit_as_another_user("bc", "customers", conflict.bc_id, city="Delft")
    sandbox.edit_as_another_user("dataverse", "accounts", conflict.dataverse_id, address1_city="Leiden")
    sandbox.edit_as_another_user("bc", "customers", one_sided.bc_id, city="Gouda")
    sandbox.delete_as_another_user("dataverse", "accounts", deleted.dataverse_id)
    return {"merged": merged, "conflict": conflict, "one_sided": one_sided, "deleted": deleted}


def test_a_previews_counts_are_the_counts_of_the_run_that_follows(
    customer,
    edited,
    run,
    sandbox_connections,
    admin_client,
):
    TableMapping.objects.filter(pk=customer.pk).update(
        deletions_from_dataverse=DeletionPolicy.PROPAGATE, deletion_safety_percent=50
    )

    previews = run(customer, dry_run=True)

    for preview in previews:
        counts = preview.preview["counts"]
        assert preview.status == JobStatus.SUCCEEDED, preview.message
        # Each record read in exactly one outcome: merging is not an outcome of its own.
        assert sum(counts.get(key, 0) for key in READ_OUTCOMES) == preview.records_read > 0
        assert set(counts) <= set(READ_OUTCOMES)
        assert preview.counts_reconcile
    to_dataverse, from_dataverse = previews
    assert to_dataverse.preview["merged"] == {"records": 1, "fields": 1}
    assert from_dataverse.preview["merged"] == {"records": 1, "fields": 1}
    assert to_dataverse.preview["counts"]["conflicts"] == from_dataverse.preview["counts"]["conflicts"] == 1
    assert from_dataverse.preview["deletions"] == {
        "found": 1,
        "policy": "Delete the other record too",
        "effect": "delete 1 Business Central record(s)",
        "held": False,
    }
    page = admin_client.get(reverse("admin:jobs_syncjob_change", args=[from_dataverse.pk])).content.decode()
    assert "delete 1 Business Central record(s)" in page and "telephone1" not in page.split("Merged fields")[0]
    assert "Merged fields" in page and "Conflicts" in page
    # The confirmation of the run shows the deletions of the previews it makes, once they have run.
    html = admin_client.post(
        reverse("admin:mappings_tablemapping_changelist"),
        {"action": "synchronize_modified_records", "_selected_action": [customer.pk]},
    ).content.decode()
    run_previews()
    rows = {row[1]: row for row in table(admin_client.get(poll_url(html)).content.decode()) if row[0] == "CUSTOMER"}
    assert rows["From Dataverse"][8] == "1: delete 1 Business Central record(s)"
    assert rows["To Dataverse"][8] == "0"

    real = run(customer)

    assert [predicted(p) for p in previews] == [counted(job) for job in real]
    assert [p.records_read for p in previews] == [job.records_read for job in real]
    with pytest.raises(KeyError):
        bc_customer(sandbox_connections, edited["deleted"].bc_id)
    assert bc_customer(sandbox_connections, edited["merged"].bc_id)["phoneNumber"] == "+31 30 123 4567"


def test_a_preview_says_when_the_safety_stop_would_hold_the_run(customer, edited, run):
    TableMapping.objects.filter(pk=customer.pk).update(deletions_from_dataverse=DeletionPolicy.UNCOUPLE)

    _, from_dataverse = run(customer, dry_run=True)

    assert from_dataverse.preview["deletions"]["held"] is True
    assert from_dataverse.preview["deletions"]["found"] == 1
    # The run stops at the safety stop before it reads or writes anything: the preview counts nothing else either.
    assert from_dataverse.preview["counts"] == {}
    assert "safety stop" in from_dataverse.message

    _, real = run(customer)
    assert real.status == JobStatus.FAILED and real.held_deletions and counted(real) == predicted(from_dataverse)

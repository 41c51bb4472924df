"""A default field mapping does not wipe data a user would keep: an empty source value on a one-way field keeps the
target's value (the demo's first sync blanked the phone number of every salesperson, since the Dataverse users have
none), and the field mapping's help says what an empty source value does. Real RQ worker, real HTTP (sandbox)."""

import pytest
from django.urls import reverse

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import JobStatus
from jobs.models import SyncJob
from jobs.services import sync_enqueue
from mappings.models import FieldMapping, TableMapping
from sandbox import testing as sandbox

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


@pytest.fixture
def run(django_capture_on_commit_callbacks, rq_worker):
    def run_mapping(mapping, **options):
        with django_capture_on_commit_callbacks(execute=True):
            jobs = sync_enqueue(mapping=mapping, **options)
        rq_worker()
        return [SyncJob.objects.get(pk=job.pk) for job in jobs]

    return run_mapping


def salespeople_phones(bc_connection) -> dict:
    with open_client(bc_connection) as client:
        return {
            row["id"]: row["phoneNo"]
            for page in client.read_pages("salespeoplePurchasers", select=["id", "phoneNo"])
            for row in page.rows
        }


def test_users_without_a_phone_do_not_blank_the_salespeoples_phone_numbers(run, sandbox_connections):
    bc_connection = sandbox_connections[0]
    before = salespeople_phones(bc_connection)
    assert before and all(before.values())  # every salesperson has a phone number in Business Central
    salespeople = TableMapping.objects.get(name="SALESPEOPLE")

    (job,) = run(salespeople)  # couples them by e-mail with the Dataverse users, who have no mobile phone

    assert job.status == JobStatus.SUCCEEDED, job.message
    assert Coupling.objects.filter(table_mapping=salespeople).count() == len(before)
    assert salespeople_phones(bc_connection) == before

    # A phone number that a user does have still travels.
    coupling = Coupling.objects.filter(table_mapping=salespeople).first()
    sandbox.edit_as_another_user("dataverse", "systemusers", coupling.dataverse_id, mobilephone="+1 425 555 0142")
    (job,) = run(salespeople)
    assert job.modified == 1
    assert salespeople_phones(bc_connection) == {**before, str(coupling.bc_id): "+1 425 555 0142"}


def test_one_way_defaults_keep_the_target_and_bidirectional_ones_carry_a_cleared_value():
    for field in FieldMapping.objects.filter(table_mapping__is_default=True, enabled=True):
        if field.bc_field == "creditLimit" or field.constant_value:
            continue  # a number (0 is a value, never an empty one), or a constant
        assert field.not_null == (field.direction != "bidirectional"), str(field)


def test_the_field_mappings_help_says_what_an_empty_source_value_does(admin_client):
    mapping = TableMapping.objects.get(name="SALESPEOPLE")
    page = admin_client.get(reverse("admin:mappings_tablemapping_change", args=[mapping.pk])).content.decode()
    assert "empty source value keeps the target" in page.lower()
    assert "What an empty source value does. On (keep target)" in page


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_upgrading_makes_the_untouched_one_way_defaults_keep_the_target():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    def migrate(targets):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(targets)
        return executor.loader.project_state(targets).apps

    try:
        old = migrate([("mappings", "0003_mapping_change")])
        fields = old.get_model("mappings", "FieldMapping").objects.filter(table_mapping__name="SALESPEOPLE")
        fields.update(not_null=False)  # as created before
        fields.filter(bc_field="displayName").update(direction="bidirectional")  # edited by its owner since

        new = migrate([("mappings", "0004_h13errs_empty_source_keeps_target")])
        fields = new.get_model("mappings", "FieldMapping").objects.filter(table_mapping__name="SALESPEOPLE")
        assert dict(fields.values_list("bc_field", "not_null")) == {
            "email": True,
            "phoneNo": True,
            "displayName": False,  # bidirectional now: a cleared value is a change, as its owner chose
        }
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

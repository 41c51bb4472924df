"""Upgrading to companies: the mappings that existed belong to the one Business Central connection there was."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("mappings", "0003_mapping_change"), ("connectors", "0004_h17co_dataverse_company")]
AFTER = [("mappings", "0004_h17co_companies")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture(autouse=True)
def _back_to_the_latest_schema():
    """Each test goes back in history; whatever runs after it, in any order, finds every migration applied."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # leaves the tables as later tests expect
def test_existing_mappings_belong_to_the_existing_business_central_connection():
    old = migrate(BEFORE)
    connections = old.get_model("connectors", "Connection")
    common = {"environment_url": "https://example.invalid", "tenant": "t", "client_id": "c"}
    bc = connections.objects.create(kind="business_central", name="Our company", **common)
    connections.objects.create(kind="dataverse", name="Our Dataverse", **common)
    names = set(old.get_model("mappings", "TableMapping").objects.values_list("name", flat=True))

    new = migrate(AFTER)
    mappings = new.get_model("mappings", "TableMapping").objects.all()
    assert {m.name for m in mappings} == names
    assert {m.company_id for m in mappings} == {bc.pk}
    columns = {m.name: m.dataverse_company_field for m in mappings}
    assert columns["CUSTOMER"] == columns["VENDOR"] == columns["CONTACT"] == "bcbi_companyid"
    assert columns["CURRENCY"] == columns["SALESPEOPLE"] == ""
    assert not any(m.multi_company for m in mappings)

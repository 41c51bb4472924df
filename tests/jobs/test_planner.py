"""The planner decides, per record, what a sync does. These tests state the rules of domain.md section 3."""

import uuid

import pytest

from coupling.models import Coupling
from jobs.engine.planner import Action, PlanContext, plan_record
from jobs.engine.sides import BC, DATAVERSE, Side
from jobs.engine.values import FieldRule
from mappings.choices import DeletionConflictResolution, Direction, UpdateConflictResolution

BC_SIDE = Side(BC, "customers", "id", "lastModifiedDateTime", "displayName", "")
DV_SIDE = Side(DATAVERSE, "accounts", "accountid", "modifiedon", "name", "")

NAME = FieldRule(source_field="displayName", target_field="name", constant=None, bidirectional=True, label="name")
CITY = FieldRule(source_field="city", target_field="address1_city", constant=None, bidirectional=True, label="city")
CREDIT = FieldRule(source_field="creditLimit", target_field="creditlimit", constant=None, label="credit limit")


class NoLookups:
    def resolve(self, rule, value):
        raise AssertionError("no lookups in these tests")


def context(**overrides):
    values = {
        "direction": Direction.TO_DATAVERSE,
        "source": BC_SIDE,
        "target": DV_SIDE,
        "rules": [NAME, CITY, CREDIT],
        "bidirectional_mapping": True,
        "only_coupled": False,
        "force": False,
        "update_policy": UpdateConflictResolution.NONE,
        "deletion_policy": DeletionConflictResolution.NONE,
        "new_record_values": {"customertypecode": 3},
    }
    values.update(overrides)
    return PlanContext(**values)


def bc_row(**values):
    row = {"id": str(uuid.uuid4()), "@odata.etag": 'W/"bc-2"', "lastModifiedDateTime": "2026-01-02T10:00:00.123Z"}
    row.update({"displayName": "Adatum", "city": "Atlanta", "creditLimit": 1000})
    row.update(values)
    return row


def dv_row(**values):
    row = {"accountid": str(uuid.uuid4()), "@odata.etag": 'W/"7"', "modifiedon": "2026-01-01T10:00:00Z"}
    row.update({"name": "Adatum", "address1_city": "Atlanta", "creditlimit": 1000})
    row.update(values)
    return row


def coupling_for(source, target, **values):
    fields = {
        "bc_id": source["id"],
        "dataverse_id": target["accountid"],
        "bc_etag": 'W/"bc-1"',
        "dataverse_etag": target["@odata.etag"],
    }
    fields.update(values)
    return Coupling(**fields)


def test_it_ignores_uncoupled_records_when_the_mapping_syncs_only_coupled_ones():
    plan = plan_record(context(only_coupled=True), bc_row(), None, None, NoLookups())
    assert plan.action == Action.IGNORE


def test_it_inserts_an_uncoupled_record_with_all_fields_and_the_new_record_values():
    plan = plan_record(context(), bc_row(displayName="Fabrikam"), None, None, NoLookups())
    assert plan.action == Action.INSERT
    assert plan.values == {"name": "Fabrikam", "address1_city": "Atlanta", "creditlimit": 1000, "customertypecode": 3}


def test_it_writes_only_the_fields_that_differ():
    source, target = bc_row(city="Boston"), dv_row()
    plan = plan_record(context(), source, coupling_for(source, target), target, NoLookups())
    assert plan.action == Action.UPDATE
    assert plan.values == {"address1_city": "Boston"}
    assert [(d.field, d.old, d.new) for d in plan.diffs] == [("address1_city", "Atlanta", "Boston")]


def test_a_record_whose_etag_matches_the_coupling_is_unchanged_even_if_values_differ():
    source, target = bc_row(city="Boston"), dv_row()
    coupling = coupling_for(source, target, bc_etag=source["@odata.etag"])
    assert plan_record(context(), source, coupling, target, NoLookups()).action == Action.UNCHANGED


def test_a_changed_record_with_equal_values_is_unchanged():
    source, target = bc_row(), dv_row()
    assert plan_record(context(), source, coupling_for(source, target), target, NoLookups()).action == Action.UNCHANGED


def test_blank_and_null_are_the_same_value():
    source, target = bc_row(city=""), dv_row(address1_city=None)
    assert plan_record(context(), source, coupling_for(source, target), target, NoLookups()).action == Action.UNCHANGED


def test_a_change_on_both_sides_of_a_bidirectional_field_is_a_conflict_and_nothing_is_overwritten():
    source, target = bc_row(city="Boston"), dv_row(address1_city="Chicago")
    coupling = coupling_for(source, target, dataverse_etag='W/"6"')  # Dataverse changed since our last write
    plan = plan_record(context(), source, coupling, target, NoLookups())
    assert plan.action == Action.FAIL
    assert plan.error_class == "conflict"
    assert "address1_city" in plan.message
    assert plan.values == {}


def test_a_change_on_both_sides_confined_to_one_way_fields_is_not_a_conflict():
    source, target = bc_row(creditLimit=5000), dv_row(address1_city="Atlanta")
    coupling = coupling_for(source, target, dataverse_etag='W/"6"')
    plan = plan_record(context(), source, coupling, target, NoLookups())
    assert plan.action == Action.UPDATE
    assert plan.values == {"creditlimit": 5000}


@pytest.mark.parametrize(
    ("policy", "direction", "expected"),
    [
        (UpdateConflictResolution.SEND_TO_DATAVERSE, Direction.TO_DATAVERSE, Action.UPDATE),
        (UpdateConflictResolution.SEND_TO_DATAVERSE, Direction.FROM_DATAVERSE, Action.SKIP),
        (UpdateConflictResolution.GET_FROM_DATAVERSE, Direction.TO_DATAVERSE, Action.SKIP),
        (UpdateConflictResolution.GET_FROM_DATAVERSE, Direction.FROM_DATAVERSE, Action.UPDATE),
    ],
)
def test_the_mappings_conflict_policy_picks_the_winning_side(policy, direction, expected):
    if direction == Direction.TO_DATAVERSE:
        source, target = bc_row(city="Boston"), dv_row(address1_city="Chicago")
        coupling = coupling_for(source, target, dataverse_etag='W/"6"')
        ctx = context(update_policy=policy, direction=direction)
    else:
        target, source = bc_row(city="Boston"), dv_row(address1_city="Chicago", **{"@odata.etag": 'W/"9"'})
        coupling = coupling_for(target, source, bc_etag='W/"bc-1"', dataverse_etag='W/"8"')
        rules = [FieldRule("address1_city", "city", None, bidirectional=True, label="city")]
        ctx = context(update_policy=policy, direction=direction, source=DV_SIDE, target=BC_SIDE, rules=rules)
    assert plan_record(ctx, source, coupling, target, NoLookups()).action == expected


def test_a_field_policy_overrides_the_mappings_policy():
    city = FieldRule(
        "city", "address1_city", None, bidirectional=True, conflict_policy=UpdateConflictResolution.SEND_TO_DATAVERSE
    )
    source, target = bc_row(city="Boston"), dv_row(address1_city="Chicago")
    coupling = coupling_for(source, target, dataverse_etag='W/"6"')
    plan = plan_record(context(rules=[NAME, city]), source, coupling, target, NoLookups())
    assert plan.action == Action.UPDATE
    assert plan.values == {"address1_city": "Boston"}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (DeletionConflictResolution.NONE, Action.FAIL),
        (DeletionConflictResolution.RESTORE_RECORDS, Action.INSERT),
        (DeletionConflictResolution.REMOVE_COUPLING, Action.UNCOUPLE),
    ],
)
def test_a_deleted_counterpart_follows_the_deletion_policy(policy, expected):
    source, gone = bc_row(), dv_row()
    plan = plan_record(context(deletion_policy=policy), source, coupling_for(source, gone), None, NoLookups())
    assert plan.action == expected
    if expected == Action.FAIL:
        assert plan.error_class == "deletion_conflict"


def test_a_skipped_coupling_is_skipped():
    source, target = bc_row(city="Boston"), dv_row()
    plan = plan_record(context(), source, coupling_for(source, target, skipped=True), target, NoLookups())
    assert plan.action == Action.SKIP


def test_a_forced_run_overwrites_without_change_or_conflict_checks():
    source, target = bc_row(city="Boston"), dv_row(address1_city="Chicago")
    coupling = coupling_for(source, target, bc_etag=source["@odata.etag"], dataverse_etag='W/"6"')
    plan = plan_record(context(force=True), source, coupling, target, NoLookups())
    assert plan.action == Action.UPDATE
    assert plan.values == {"address1_city": "Boston"}


def test_a_pending_coupling_without_its_target_is_inserted_again_not_reported_deleted():
    source, target = bc_row(), dv_row()
    coupling = coupling_for(source, target, pending=True)
    assert plan_record(context(), source, coupling, None, NoLookups()).action == Action.INSERT


def test_business_central_code_fields_read_back_upper_case_are_equal():
    source = dv_row(address1_country="us")
    target = bc_row(country="US")
    rules = [FieldRule("address1_country", "country", None, bidirectional=True)]
    ctx = context(direction=Direction.FROM_DATAVERSE, source=DV_SIDE, target=BC_SIDE, rules=rules)
    coupling = coupling_for(target, source, dataverse_etag='W/"1"')
    assert plan_record(ctx, source, coupling, target, NoLookups()).action == Action.UNCHANGED


def test_a_value_without_an_entry_in_the_value_map_fails_with_a_clear_message():
    rule = FieldRule("paymentTermsId", "paymenttermscode", None, value_map={"a": 1}, label="payment terms")
    plan = plan_record(context(rules=[rule]), bc_row(paymentTermsId="b"), None, None, NoLookups())
    assert plan.action == Action.FAIL
    assert "value map" in plan.message

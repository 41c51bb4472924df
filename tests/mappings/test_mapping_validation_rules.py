"""The validation rules as plain functions, for inputs the admin's form fields cannot produce (imports)."""

import pytest

from mappings.defaults import DEFAULT_MAPPINGS, default_mapping
from mappings.validation import errors, find_cycles, validate_mapping


def test_every_default_passes_the_rules_that_need_no_metadata():
    for spec in DEFAULT_MAPPINGS:
        assert errors(validate_mapping(spec)) == [], spec["name"]


def test_an_unknown_table_direction_is_reported_not_crashed_on():
    spec = {**default_mapping("CURRENCY"), "direction": "sideways"}
    messages = [p.message for p in validate_mapping(spec)]
    assert messages == ["Direction 'sideways' is not one of 'bidirectional', 'to_dataverse', 'from_dataverse'."]


@pytest.mark.parametrize(
    ("expression", "refused"),
    [
        ("blocked eq ' ' or blocked eq 'Ship'", False),  # one field: Business Central accepts it
        ("blocked eq ' ' or city eq 'Seattle'", True),
        ("not (blocked eq 'All' or displayName eq 'x')", True),
    ],
)
def test_business_central_or_is_allowed_on_one_field_only(expression, refused):
    spec = {**default_mapping("CUSTOMER"), "table_filter": expression}
    found = [p.message for p in errors(validate_mapping(spec)) if "'or' across different fields" in p.message]
    assert bool(found) == refused


def test_find_cycles_reports_each_cycle_once():
    graph = {"A": {"B"}, "B": {"C"}, "C": {"A"}, "D": {"D"}, "E": {"A"}}
    messages = [p.message for p in find_cycles(graph)]
    assert messages == ["Dependency cycle: A -> B -> C -> A.", "Dependency cycle: D -> D."]

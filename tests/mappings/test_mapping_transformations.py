"""Transformation rules, applied in order, with clear errors for bad rules."""

import pytest

from mappings.transformations import TransformationError, apply_transformation, validate_rules


@pytest.mark.parametrize(
    ("rules", "value", "expected"),
    [
        ([{"rule": "uppercase"}], "net 30", "NET 30"),
        ([{"rule": "lowercase"}], "NET", "net"),
        ([{"rule": "title_case"}], "john smith", "John Smith"),
        ([{"rule": "trim"}], "  a b  ", "a b"),
        ([{"rule": "substring", "start": 2, "length": 3}], "ABCDEF", "BCD"),
        ([{"rule": "substring", "start": 3}], "ABCDEF", "CDEF"),
        ([{"rule": "replace", "find": "U.S.", "replace": "US"}], "U.S.", "US"),
        ([{"rule": "regex_replace", "pattern": r"^(\d+):.*$", "replace": r"\1"}], "2:2", "2"),
        ([{"rule": "remove_non_alphanumeric"}], "+1 (425) 555-0100", "14255550100"),
        ([{"rule": "round", "precision": 0.01}], 10.126, 10.13),
        ([{"rule": "round", "precision": 10, "mode": "down"}], 129, 120),
        ([{"rule": "round"}], "2.5", "3"),
        ([{"rule": "date_format", "format": "%d-%m-%Y"}], "2026-11-24", "24-11-2026"),
        ([{"rule": "date_format", "format": "%Y/%m/%d %H:%M"}], "2026-11-24T16:05:00Z", "2026/11/24 16:05"),
        (
            [{"rule": "trim"}, {"rule": "substring", "start": 1, "length": 10}, {"rule": "uppercase"}],
            " cash payment ",
            "CASH PAYME",
        ),
        ([], "unchanged", "unchanged"),
        ([{"rule": "uppercase"}], None, None),
    ],
)
def test_rules_transform_values_in_order(rules, value, expected):
    assert apply_transformation(rules, value) == expected


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"rule": "upercase"}], 'unknown rule "upercase". Did you mean "uppercase"?'),
        ([{"rule": "substring"}], '"substring" needs start'),
        ([{"rule": "substring", "start": 0}], "start must be a whole number of at least 1"),
        ([{"rule": "regex_replace", "pattern": "("}], "invalid pattern"),
        ([{"rule": "round", "precision": -1}], "precision must be a positive number"),
        ([{"rule": "trim", "extra": 1}], '"trim" does not take extra'),
        (["trim"], 'must be an object with a "rule" name'),
    ],
)
def test_bad_rules_raise_a_clear_value_error(rules, message):
    with pytest.raises(ValueError, match=".*") as caught:
        apply_transformation(rules, "x")
    assert isinstance(caught.value, TransformationError)
    assert message in str(caught.value)
    assert any(message in problem for problem in validate_rules(rules))


def test_a_value_the_rule_cannot_transform_is_a_clear_error():
    with pytest.raises(TransformationError, match="not a number"):
        apply_transformation([{"rule": "round"}], "abc")
    with pytest.raises(TransformationError, match="ISO date"):
        apply_transformation([{"rule": "date_format", "format": "%Y"}], "yesterday")


def test_validate_rules_accepts_a_good_chain_and_rejects_a_non_list():
    assert validate_rules([{"rule": "trim"}, {"rule": "round", "precision": 0.5, "mode": "up"}]) == []
    assert validate_rules({"rule": "trim"}) == ['Transformation must be a JSON list of rules, e.g. [{"rule": "trim"}].']

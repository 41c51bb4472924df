"""Transformation rules applied to a field's value before it is written (BC's Transformation Rule, table 1237).

A field mapping's `transformation` is a JSON list of rules applied in order, each a dict naming its `rule`:

    [{"rule": "trim"}, {"rule": "substring", "start": 1, "length": 10}, {"rule": "uppercase"}]

Rules and their options:
- uppercase, lowercase, title_case, trim, remove_non_alphanumeric: no options.
- substring: start (1-based, as in BC), length (optional: to the end).
- replace: find, replace (optional, default "").
- regex_replace: pattern (Python regular expression), replace (optional; \\1 refers to a group).
- round: precision (optional, default 1, e.g. 0.01), mode (optional: nearest, up, down).
- date_format: format (strftime, e.g. "%d-%m-%Y"); the value is an ISO 8601 date or date-time.

An empty value (None) passes through every rule unchanged.
"""

from __future__ import annotations

import datetime
import difflib
import re
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any


class TransformationError(ValueError):
    """A rule list that cannot be applied: unknown rule, missing or bad option."""


class TransformationValueError(TransformationError):
    """A value the rule cannot transform (e.g. rounding a text that is not a number)."""


# rule -> (required options, optional options)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "uppercase": ((), ()),
    "lowercase": ((), ()),
    "title_case": ((), ()),
    "trim": ((), ()),
    "remove_non_alphanumeric": ((), ()),
    "substring": (("start",), ("length",)),
    "replace": (("find",), ("replace",)),
    "regex_replace": (("pattern",), ("replace",)),
    "round": ((), ("precision", "mode")),
    "date_format": (("format",), ()),
}

ROUNDING_MODES = {"nearest": ROUND_HALF_UP, "up": ROUND_CEILING, "down": ROUND_FLOOR}


def validate_rules(rules: Any) -> list[str]:
    """Return what is wrong with a rule list, one readable message per problem (empty when it is fine)."""
    if not isinstance(rules, list):
        return ['Transformation must be a JSON list of rules, e.g. [{"rule": "trim"}].']
    problems = []
    for number, rule in enumerate(rules, start=1):
        try:
            _check_rule(rule)
        except TransformationError as exc:
            problems.append(f"Rule {number}: {exc}")
    return problems


def apply_transformation(rules: list[dict], value: Any) -> Any:
    """Return `value` transformed by each rule in turn. Raises TransformationError for a bad rule or value."""
    if rules and not isinstance(rules, list):
        raise TransformationError('Transformation must be a JSON list of rules, e.g. [{"rule": "trim"}].')
    for rule in rules or []:
        _check_rule(rule)
        if value is None:
            continue
        value = _APPLY[rule["rule"]](rule, value)
    return value


def _check_rule(rule: Any) -> None:
    if not isinstance(rule, dict) or "rule" not in rule:
        raise TransformationError(f'each rule must be an object with a "rule" name, got {rule!r}.')
    name = rule["rule"]
    if name not in RULES:
        close = difflib.get_close_matches(str(name), RULES, n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ""
        raise TransformationError(f'unknown rule "{name}".{hint} Known rules: {", ".join(RULES)}.')
    required, optional = RULES[name]
    missing = [option for option in required if option not in rule]
    if missing:
        raise TransformationError(f'"{name}" needs {", ".join(missing)}.')
    unknown = sorted(set(rule) - {"rule", *required, *optional})
    if unknown:
        raise TransformationError(f'"{name}" does not take {", ".join(unknown)}.')
    if name == "substring":
        _positive_int(rule, "start")
        if "length" in rule:
            _positive_int(rule, "length", minimum=0)
    elif name == "regex_replace":
        try:
            re.compile(rule["pattern"])
        except (re.error, TypeError) as exc:
            raise TransformationError(f'"regex_replace" has an invalid pattern {rule["pattern"]!r}: {exc}.') from None
    elif name == "round":
        _precision(rule)
        if rule.get("mode", "nearest") not in ROUNDING_MODES:
            raise TransformationError(f'"round" mode must be one of {", ".join(ROUNDING_MODES)}.')
    elif name == "date_format" and not isinstance(rule["format"], str):
        raise TransformationError('"date_format" format must be text, e.g. "%d-%m-%Y".')
    for option in ("find", "replace"):
        if option in rule and not isinstance(rule[option], str):
            raise TransformationError(f'"{name}" {option} must be text.')


def _positive_int(rule: dict, option: str, minimum: int = 1) -> int:
    value = rule[option]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise TransformationError(f'"{rule["rule"]}" {option} must be a whole number of at least {minimum}.')
    return value


def _precision(rule: dict) -> Decimal:
    try:
        precision = Decimal(str(rule.get("precision", 1)))
    except InvalidOperation:
        precision = Decimal(0)
    if not precision.is_finite() or precision <= 0:
        raise TransformationError('"round" precision must be a positive number, e.g. 0.01.')
    return precision


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _substring(rule: dict, value: Any) -> str:
    text = _text(value)
    start = rule["start"] - 1
    length = rule.get("length")
    return text[start:] if length is None else text[start : start + length]


def _round(rule: dict, value: Any) -> Any:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise TransformationValueError(f'"round" cannot round {value!r}: it is not a number.') from None
    precision = _precision(rule)
    rounded = (number / precision).quantize(Decimal(1), rounding=ROUNDING_MODES[rule.get("mode", "nearest")])
    result = rounded * precision
    # Keep the caller's type: numbers stay numbers, texts stay texts.
    if isinstance(value, int) and not isinstance(value, bool) and result == result.to_integral_value():
        return int(result)
    if isinstance(value, int | float):
        return float(result)
    return str(result)


def _date_format(rule: dict, value: Any) -> str:
    if isinstance(value, datetime.date):
        moment = value
    else:
        text = _text(value).strip()
        try:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise TransformationValueError(f'"date_format" cannot read {value!r} as an ISO date.') from None
        if len(text) == 10:
            moment = moment.date()
    return moment.strftime(rule["format"])


_APPLY = {
    "uppercase": lambda rule, value: _text(value).upper(),
    "lowercase": lambda rule, value: _text(value).lower(),
    "title_case": lambda rule, value: _text(value).title(),
    "trim": lambda rule, value: _text(value).strip(),
    "remove_non_alphanumeric": lambda rule, value: re.sub(r"[\W_]", "", _text(value)),
    "substring": _substring,
    "replace": lambda rule, value: _text(value).replace(rule["find"], rule.get("replace", "")),
    "regex_replace": lambda rule, value: re.sub(rule["pattern"], rule.get("replace", ""), _text(value)),
    "round": _round,
    "date_format": _date_format,
}

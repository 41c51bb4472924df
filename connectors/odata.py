"""OData v4 syntax in one place: literals, comparisons, `and`/`or` combinations, datetimes, ids.

Every `$filter` text that syncadmin builds (the clients, the engine, record search) is made with these functions, so
quoting is done once and right: a name such as `O'Brien` can never end a string literal early.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID


def datetime_literal(value: datetime, *, milliseconds: bool) -> str:
    """An unquoted UTC literal: `2024-03-01T00:00:00.123Z` (Business Central) or `2024-03-01T00:00:00Z` (Dataverse).

    Dataverse stores `modifiedon` to the second, so the value is truncated down: with `ge` that only widens the
    window a little, it never skips a row.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    if milliseconds:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: Any) -> datetime | None:
    """Parse the services' ISO-8601 UTC datetimes (`...Z`, with or without fractions)."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python 3.11 accepts 1-6 fraction digits; the services send up to 7 (.NET ticks).
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def string_literal(value: str) -> str:
    """A quoted OData string literal (single quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


def literal(value: Any) -> str:
    """The OData literal for a Python value: booleans, numbers and UUIDs bare, everything else a quoted string.

    A text that looks like a GUID is still a text: a name column holding one must be compared with a string, so a
    caller that means a GUID column passes a UUID.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, UUID):
        return str(value)
    return string_literal(str(value))


def eq(field: str, value: Any) -> str:
    """`field eq value`, with the value written as its OData literal."""
    return f"{field} eq {literal(value)}"


def eq_any(field: str, values: list[Any]) -> str:
    """`field eq a or field eq b ...`: both services take `or` (Business Central takes `in` only in schema 2.1)."""
    return " or ".join(eq(field, value) for value in values)


def contains(field: str, text: str) -> str:
    """`contains(field,'text')`: a case-insensitive substring match on both services."""
    return f"contains({field},{string_literal(text)})"


def as_uuid(value: Any) -> UUID | None:
    if value is None or value == "":
        return None
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        return None


def and_filters(*parts: str | None) -> str | None:
    """Combine filters with `and`, parenthesising each so a caller's `or` keeps its meaning."""
    present = [p.strip() for p in parts if p and p.strip()]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return " and ".join(f"({p})" for p in present)


def with_fields(select: list[str] | None, *required: str) -> list[str] | None:
    """Add the fields we rely on (id, modified-on) to a caller's `$select`; None means all columns."""
    if select is None:
        return None
    fields = list(dict.fromkeys(select))
    for name in required:
        if name and name not in fields:
            fields.append(name)
    return fields


T = TypeVar("T")


def chunked(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]


# --------------------------------------------------------------------------------------------------------------
# Syntax errors in words
# --------------------------------------------------------------------------------------------------------------

COMPARISON_OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le", "has", "in")
LOGICAL_OPERATORS = ("and", "or")
# What people type from other languages, and the OData word for it.
OPERATOR_SPELLINGS = {"=": "eq", "==": "eq", "!=": "ne", "<>": "ne", ">": "gt", ">=": "ge", "<": "lt", "<=": "le"}
OPERATOR_SPELLINGS |= {"&&": "and", "||": "or", "&": "and", "|": "or"}
_WORD = re.compile(r"[^\s()]+|[()]")


def describe_syntax_error(expression: str, exc: Exception) -> str:
    """Say in words what is wrong in a `$filter` the odata-query parser refused, and where.

    The parser reports the token it stopped at (often the blank before the real culprit, because the grammar reads
    ` eq ` with its spaces as one token); this looks at the words from there on and names the usual mistakes:
    an unclosed quote or parenthesis, an operator spelled as in another language, a condition cut short, two
    conditions without `and`/`or` between them. The answer gives the 1-based position and an excerpt.
    """
    token = getattr(exc, "token", None)
    if getattr(exc, "eof", False) or (token is None and hasattr(exc, "eof")):
        return _at_end(expression)
    if token is None:  # not a syntax error of the grammar (e.g. an unknown function): the library's text is plain
        return str(exc)
    index = int(getattr(token, "index", 0) or 0)
    if getattr(token, "type", "") == "ERROR":
        text = str(token.value)
        if text.startswith("'"):
            return f"the text value opened with ' at position {index + 1} is not closed {_excerpt(expression, index)}."
        word = _WORD.match(text)
        shown = word.group(0) if word else text[:1]
        return f"cannot read {shown!r} at position {index + 1} {_excerpt(expression, index)}."
    if getattr(token, "type", "") == ")" and _open_parentheses(expression[:index]) <= 0:
        return f"')' at position {index + 1} closes a parenthesis that was never opened {_excerpt(expression, index)}."
    # Skip blanks to the first word the parser could not take.
    start = index
    while start < len(expression) and expression[start].isspace():
        start += 1
    if start >= len(expression):
        return _at_end(expression)
    word = _WORD.match(expression, start)
    assert word is not None  # a non-blank character always starts a word
    text, after = word.group(0), expression[word.end() :].strip()
    where = f"at position {start + 1} {_excerpt(expression, start)}"
    lowered = text.lower()
    if lowered in COMPARISON_OPERATORS and not after:
        return f"{text!r} {where} has nothing after it: expected a value such as 'text', 42, true or null."
    if lowered in LOGICAL_OPERATORS and not after:
        return f"{text!r} {where} has nothing after it: expected another condition."
    if text in OPERATOR_SPELLINGS:
        return f"{text!r} {where} is not an OData operator: write {OPERATOR_SPELLINGS[text]!r}."
    if lowered not in COMPARISON_OPERATORS + LOGICAL_OPERATORS:
        near = difflib.get_close_matches(lowered, COMPARISON_OPERATORS + LOGICAL_OPERATORS, n=1, cutoff=0.6)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        return (
            f"unexpected {text!r} {where}: expected an operator (eq, ne, gt, ge, lt, le) after a field, "
            f"or 'and' / 'or' between two conditions.{hint}"
        )
    return f"{text!r} {where} cannot stand here: expected a field, a value or a condition."


def _at_end(expression: str) -> str:
    if _open_parentheses(expression) > 0:
        return "the filter ends before a parenthesis opened in it is closed: add ')'."
    tail = expression.strip()[-30:]
    return f"the filter ends too early, after {tail!r}: a value or a condition is missing."


def _open_parentheses(text: str) -> int:
    """Parentheses opened and not closed, outside quoted text."""
    depth, quoted = 0, False
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
    return depth


def _excerpt(expression: str, index: int) -> str:
    """`(near «name ▸eqq 1»)`: up to 20 characters on each side, with a mark where the problem starts."""
    before = expression[max(0, index - 20) : index]
    after = expression[index : index + 20]
    lead = "…" if index > 20 else ""
    tail = "…" if index + 20 < len(expression) else ""
    return f"(near «{lead}{before}▸{after}{tail}»)"

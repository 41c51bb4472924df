"""OData v4 syntax in one place: literals, comparisons, `and`/`or` combinations, datetimes, ids.

Every `$filter` text that syncadmin builds (the clients, the engine, record search) is made with these functions, so
quoting is done once and right: a name such as `O'Brien` can never end a string literal early.
"""

from __future__ import annotations

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

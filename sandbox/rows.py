"""Shared row mechanics: serialising stored rows as either service shows them, reading pages by keyset,
and the bookkeeping every write does (timestamps, row versions, ETags, counters)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connections, models, transaction
from django.db.models import Q, QuerySet

from sandbox import metering, odata, schema
from sandbox.models import Counter, Setting

DB = "sandbox"

# --- settings shared across processes ---------------------------------------------------------------------------

DEFAULTS = {
    "token_lifetime": 3599,
    "page_cap:bc": 20000,
    "page_cap:dataverse": 5000,
    "alternate_keys": {},  # Dataverse: {"accounts": [["accountnumber"]]}
    "change_tracking_days": 7,
    "throttle": {"enabled": False, "window_seconds": 300, "limit": 6000, "concurrency": 52, "retry_after": 5},
    "bc_webhook_delay": 30.0,
    # The emulated services' clock runs this many seconds ahead of (or, negative, behind) this machine's: real
    # servers' clocks are never exactly the worker's, and the engine must not lose changes to the difference.
    "clock_offset_seconds": 0,
    "bc_webhook_collection_threshold": 1000,
    "dataverse_webhook_delay": 0.0,
    "cost_profile": None,  # sandbox.costs: off unless a test or the bench switches a profile on
    "cost_stats": {},
}


def get_setting(key: str):
    row = Setting.objects.using(DB).filter(key=key).values_list("value", flat=True).first()
    return DEFAULTS.get(key) if row is None else row


def get_settings(*keys: str) -> dict:
    """Several settings in one query (each request reads a few)."""
    found = dict(Setting.objects.using(DB).filter(key__in=keys).values_list("key", "value"))
    return {key: found.get(key, DEFAULTS.get(key)) for key in keys}


def set_setting(key: str, value) -> None:
    Setting.objects.using(DB).update_or_create(key=key, defaults={"value": value})


# --- time, versions, ETags -------------------------------------------------------------------------------------


_clock_offset: ContextVar[float | None] = ContextVar("sandbox_clock_offset", default=None)


@contextmanager
def server_clock():
    """A request's scope for its clock offset, read once with its other settings (`set_server_clock`).

    Until then the offset is 0: an answer to a request that failed before its settings were read (a locked
    database) must not need the database to stamp its Date header.
    """
    token = _clock_offset.set(0.0)
    try:
        yield
    finally:
        _clock_offset.reset(token)


def set_server_clock(offset_seconds: float) -> None:
    _clock_offset.set(float(offset_seconds or 0))


def clock_now() -> datetime:
    """The emulated services' time: this machine's, shifted by the `clock_offset_seconds` setting."""
    offset = _clock_offset.get()
    if offset is None:  # outside a request, e.g. an edit "by another user" in a test
        offset = float(get_setting("clock_offset_seconds") or 0)
    return datetime.now(UTC) + timedelta(seconds=offset)


def now_ms() -> str:
    return odata.iso_ms(clock_now())


def later_than(previous: str | None, *, seconds_only: bool = False) -> str:
    """Now, but strictly after `previous` (a write always moves the modified-on forward)."""
    moment = clock_now()
    if seconds_only:
        moment = moment.replace(microsecond=0)
    if previous:
        prev = datetime.strptime(previous, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        if moment <= prev:
            moment = prev + (timedelta(seconds=1) if seconds_only else timedelta(milliseconds=1))
    return odata.iso_ms(moment)


def take_numbers(name: str, count: int = 1) -> int:
    """Reserve `count` values of a monotonic counter; returns the first. Runs inside the caller's transaction."""
    table = connections[DB].ops.quote_name(Counter._meta.db_table)
    with connections[DB].cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET value = value + %s WHERE name = %s RETURNING value", [count, name])  # noqa: S608
        found = cursor.fetchone()
    if found is None:
        with transaction.atomic(using=DB):
            Counter.objects.using(DB).get_or_create(name=name)
        return take_numbers(name, count)
    return found[0] - count + 1


def next_versions(count: int = 1) -> int:
    """Dataverse's row version is database-wide and only ever grows."""
    return take_numbers("dataverse:versionnumber", count)


def bc_etag() -> str:
    """An opaque, base64-ish payload in the shape Business Central uses (`'19;<number>;00;'`)."""
    number = str(secrets.randbits(62))
    return base64.b64encode(f"'{len(number)};{number};00;'".encode()).decode()


# --- serialisation -------------------------------------------------------------------------------------------------


@dataclass
class Serializer:
    fields: list[str]  # storage fields to read, in order
    build: Callable[[tuple], dict]


FORMATTED = "@OData.Community.Display.V1.FormattedValue"
LOOKUP_LOGICAL = "@Microsoft.Dynamics.CRM.lookuplogicalname"


def bc_serializer(table: schema.Table, columns: list[schema.Column]) -> Serializer:
    names = ["@odata.etag"] + [c.api_name for c in columns]
    fields = ["etag"] + [table.storage(c) for c in columns]
    has_currency = any(c.name == "currencyCode" for c in columns)
    booleans = [c.name for c in columns if c.kind == "boolean"]

    def build(values: tuple) -> dict:
        row = dict(zip(names, values, strict=False))
        row["@odata.etag"] = f'W/"{row["@odata.etag"]}"'
        if has_currency and not row["currencyCode"]:
            row["currencyCode"] = schema.LOCAL_CURRENCY
        for name in booleans:
            row[name] = bool(row[name])
        return row

    return Serializer(fields, build)


def _formatted_datetime(value: str) -> str:
    moment = datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    return f"{moment.month}/{moment.day}/{moment.year} {moment.strftime('%I:%M %p').lstrip('0')}"


def dataverse_serializer(
    table: schema.Table, columns: list[schema.Column], *, annotations: str = "", key_last: bool = False
) -> Serializer:
    """Columns as Dataverse shows them: `_x_value` lookups, whole-second datetimes, `W/"<version>"` ETags."""
    key = table.column(table.primary_key)
    columns = [c for c in columns if c is not key]
    columns = columns + [key] if key_last else [key] + columns
    names = [c.api_name for c in columns]
    fields = ["version"] + [table.storage(c) for c in columns]
    datetimes = [c.api_name for c in columns if c.kind == "datetime"]
    booleans = [c.api_name for c in columns if c.kind == "boolean"]
    want_formatted = annotations and ("*" in annotations or "FormattedValue" in annotations)
    want_lookup = annotations and ("*" in annotations or "lookuplogicalname" in annotations or "CRM.*" in annotations)
    formatters: list[tuple[str, Callable]] = []
    if want_formatted:
        for c in columns:
            if c.kind == "choice":
                labels = dict(c.options)
                formatters.append((c.api_name, labels.get))
            elif c.kind == "boolean":
                formatters.append((c.api_name, lambda v: "Yes" if v else "No"))
            elif c.kind == "money":
                formatters.append((c.api_name, lambda v: f"${v:,.2f}"))
            elif c.kind == "integer" and c.name != "versionnumber":
                formatters.append((c.api_name, lambda v: f"{v:,}"))
            elif c.kind == "datetime":
                formatters.append((c.api_name, _formatted_datetime))
    lookups = []
    if want_lookup:
        for c in columns:
            if c.kind == "lookup":
                lookups.append((c.api_name, c))
        if any(c.name == "parentcustomerid" for c in columns):
            fields.append("parentcustomeridtype")

    def build(values: tuple) -> dict:
        row = {"@odata.etag": f'W/"{values[0]}"'}
        row.update(zip(names, values[1:], strict=False))
        for name in datetimes:
            value = row[name]
            if value:
                row[name] = value[:19] + "Z"
        for name in booleans:
            if row[name] is not None:
                row[name] = bool(row[name])
        for name, fmt in formatters:
            value = row[name]
            if value is not None:
                row[f"{name}{FORMATTED}"] = fmt(value)
        for name, column in lookups:
            if row[name] is not None:
                if column.name == "parentcustomerid":
                    target = values[-1] or "account"
                else:
                    target = schema.table("dataverse", column.targets[0]).logical_name
                row[f"{name}{LOOKUP_LOGICAL}"] = target
        return row

    return Serializer(fields, build)


# --- reading pages ---------------------------------------------------------------------------------------------


@dataclass
class Page:
    rows: list[dict]
    next_token: str | None
    count: int | None = None


def read_page(
    table: schema.Table,
    queryset: QuerySet,
    serializer: Serializer,
    *,
    order: list[tuple[schema.Column, bool]],
    page_size: int,
    token: dict | None,
    limit: int | None = None,
    skip: int = 0,
) -> Page:
    """One page in keyset order. `limit` is what is left of `$top`; the token carries the last key and that rest."""
    fields = odata.order_fields(table, order)
    qs = queryset.order_by(*odata.order_expressions(fields))
    if token:
        qs = qs.filter(odata.after(fields, token["k"]))
        limit = token.get("l", limit)
    elif skip:
        qs = qs[skip:]  # BC's `$skip` (discouraged there, but supported): only ever on the first page
    size = page_size if limit is None else min(page_size, limit)
    extra = [f for f, _ in fields if f not in serializer.fields]
    wanted = serializer.fields + extra
    positions = [wanted.index(f) for f, _ in fields]
    tuples = _fetch(qs.values_list(*wanted)[: size + 1]) if size > 0 else []
    more = len(tuples) > size
    tuples = tuples[:size]
    left = None if limit is None else limit - len(tuples)
    next_token = None
    if more and (left is None or left > 0):
        last = tuples[-1]
        payload = {"k": [last[p] for p in positions]}
        if left is not None:
            payload["l"] = left
        next_token = odata.encode_token(payload)
    metering.count_read(len(tuples))
    build = serializer.build
    if extra:
        width = len(serializer.fields)
        return Page([build(t[:width]) for t in tuples], next_token)
    return Page([build(t) for t in tuples], next_token)


def _fetch(queryset: QuerySet) -> list[tuple]:
    """Raw rows without Django's per-value converters (booleans are fixed by the serializers): a page of 5,000 rows
    must stay cheap."""
    sql, params = queryset.query.get_compiler(using=DB).as_sql()
    with connections[DB].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def by_id(queryset: QuerySet, record_id: str) -> Q:
    return queryset.filter(rid=record_id)


def insert_many(model: type[models.Model], instances: list[models.Model]) -> None:
    """Insert many new rows with one executemany: Django's bulk_create splits them into batches of
    999 // columns rows on SQLite (a dozen for a wide table) and prepares every value through its field.

    The emulated tables hold only text, numbers and booleans (times are ISO strings), which every driver takes
    as they are.
    """
    if not instances:
        return
    fields = [f for f in model._meta.concrete_fields]
    connection = connections[DB]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({marks})"
    values = [[getattr(instance, f.attname) for f in fields] for instance in instances]
    with connection.cursor() as cursor:
        cursor.executemany(sql, values)

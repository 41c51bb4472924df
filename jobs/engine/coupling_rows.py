"""Write a page of couplings with one executemany per statement.

Django's bulk_create and bulk_update compile SQL field by field and row by row; for the thousands of couplings a
page writes that was a third of a full synchronization's time. These statements are plain INSERT and UPDATE by
primary key, so they work alike on SQLite and PostgreSQL; values go through each field's own conversion only
where the database needs one (UUIDs, datetimes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import DateTimeField, Field, JSONField, UUIDField
from django.utils import timezone

from coupling.models import Coupling

Converter = Callable[[Any], Any] | None


def _converters(fields: Sequence[Field[Any, Any]], connection: BaseDatabaseWrapper) -> list[Converter]:
    def convert(field: Field[Any, Any]) -> Converter:
        if isinstance(field, UUIDField | DateTimeField | JSONField):
            return lambda value: field.get_db_prep_save(value, connection)
        return None

    return [convert(f) for f in fields]


def _column(field: Field[Any, Any]) -> str:
    assert field.column is not None  # every concrete field has its column
    return field.column


def _field(name: str) -> Field[Any, Any]:
    field = Coupling._meta.get_field(name)
    assert isinstance(field, Field)  # a column of the table, not a reverse relation
    return field


def _values(instance: Coupling, fields: Sequence[Field[Any, Any]], converters: list[Converter]) -> list[Any]:
    row = []
    for field, converter in zip(fields, converters, strict=True):
        value = getattr(instance, field.attname)
        row.append(converter(value) if converter and value is not None else value)
    return row


def insert_couplings(couplings: list[Coupling]) -> None:
    """Insert new couplings and set their primary keys (read back by their source ids in one query)."""
    if not couplings:
        return
    now = timezone.now()
    for coupling in couplings:
        coupling.created_at = coupling.updated_at = now
    connection = connections[router.db_for_write(Coupling)]
    fields = [f for f in Coupling._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(Coupling._meta.db_table)} ({', '.join(quote(_column(f)) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    converters = _converters(fields, connection)
    with connection.cursor() as cursor:
        cursor.executemany(sql, [_values(c, fields, converters) for c in couplings])
    mapping_id = couplings[0].table_mapping_id
    by_bc: dict[UUID | None, Coupling] = {c.bc_id: c for c in couplings if c.bc_id}
    by_dataverse: dict[UUID | None, Coupling] = {c.dataverse_id: c for c in couplings if not c.bc_id}
    if by_bc:
        for pk, bc_id in Coupling.objects.filter(table_mapping_id=mapping_id, bc_id__in=list(by_bc)).values_list(
            "pk", "bc_id"
        ):
            by_bc[bc_id].pk = pk
    if by_dataverse:
        for pk, dataverse_id in Coupling.objects.filter(
            table_mapping_id=mapping_id, dataverse_id__in=list(by_dataverse)
        ).values_list("pk", "dataverse_id"):
            by_dataverse[dataverse_id].pk = pk
    for coupling in couplings:
        coupling._state.adding = False
        coupling._state.db = connection.alias


def update_couplings(couplings: list[Coupling], field_names: list[str]) -> None:
    """Update these fields of existing couplings (and their updated_at), one UPDATE by primary key per row."""
    if not couplings:
        return
    now = timezone.now()
    for coupling in couplings:
        coupling.updated_at = now
    connection = connections[router.db_for_write(Coupling)]
    fields = [_field(name) for name in [*field_names, "updated_at"]]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(_column(f))} = %s" for f in fields)
    sql = f"UPDATE {quote(Coupling._meta.db_table)} SET {assignments} WHERE {quote('id')} = %s"
    converters = _converters(fields, connection)
    with connection.cursor() as cursor:
        cursor.executemany(sql, [[*_values(c, fields, converters), c.pk] for c in couplings])

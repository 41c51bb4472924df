"""Field values: what a source row says each target field should hold, under the mapping's field rules.

Field mappings are compiled once per run into `FieldRule`s for the run's direction; lookups through other
mappings' couplings are resolved for a whole page at once (`LookupIndex`), never per record.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from connectors.types import RemoteClient
from coupling.models import Coupling
from jobs.choices import ErrorClass
from jobs.engine.planned import PlannedCouplings
from jobs.engine.sides import ZERO_GUID, Row, Side
from mappings.choices import Direction
from mappings.models import COMPANY_ENTITY_SET, FieldMapping, TableMapping
from mappings.transformations import apply_transformation


class RecordFailure(Exception):
    """This record cannot be synchronized; the message says why and what to do."""

    def __init__(self, error_class: str, message: str, detail: str = ""):
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.detail = detail


@dataclass(frozen=True)
class LookupRule:
    mapping_id: int
    mapping_name: str
    bc_entity_set: str
    dataverse_entity_set: str


@dataclass(frozen=True)
class FieldRule:
    """One enabled field mapping as it applies in one run direction."""

    source_field: str | None  # property to read on the source row; None when a constant is written
    target_field: str
    constant: str | None
    transformation: list[Any] = field(default_factory=list)
    value_map: dict[str, Any] = field(default_factory=dict)  # str(source value) -> target value
    lookup: LookupRule | None = None
    clear_on_failed_lookup: bool = False
    not_null: bool = False
    bidirectional: bool = False
    conflict_policy: str = ""
    label: str = ""
    field_mapping_id: int | None = None
    add_missing_options: bool = False  # append an option or code for a value the map lacks (engine/options.py)
    code_table: str = ""  # from Dataverse: the Business Central entity set the new codes go to
    binds: str = ""  # a constant naming a Dataverse row: the entity set it is in (the company stamp)

    @property
    def is_reference(self) -> bool:
        return self.lookup is not None or bool(self.binds)

    def write_key(self, target: Side) -> str:
        """The property to send: Dataverse lookups are written through `nav@odata.bind`."""
        if self.is_reference and target.is_dataverse:
            return f"{self.target_field}@odata.bind"
        return self.target_field

    def current_key(self, target: Side) -> str:
        """The property to read on the target row to compare with."""
        return target.read_field_name(self.target_field, is_lookup=self.is_reference)


def compile_initial_rules(mapping: TableMapping, direction: str, source: Side, target: Side) -> list[FieldRule]:
    """Plain one-way field mappings of the other direction, read backwards, for records this run creates.

    A customer created in Business Central from a Dataverse account would otherwise start without the values that
    flow only to Dataverse (a credit limit), and the next full synchronization would write Business Central's
    default over the account's value. Only plain copies qualify: a lookup, transformation or constant has no
    backward reading, nor has a value map that sends several values to one. Columns the target does not let us
    write are left out by the run, from the target's metadata.
    """
    backwards = Direction.FROM_DATAVERSE if direction == Direction.TO_DATAVERSE else Direction.TO_DATAVERSE
    plain = [
        fm
        for fm in mapping.field_mappings.filter(enabled=True, direction=backwards, lookup_mapping__isnull=True)
        if fm.bc_field
        and fm.dataverse_field
        and not fm.transformation
        and fm.constant_value == ""
        and len(set(map(str, (fm.value_map or {}).values()))) == len(fm.value_map or {})
    ]
    return compile_rules(mapping, direction, source, target, field_mappings=plain)


def compile_rules(
    mapping: TableMapping,
    direction: str,
    source: Side,
    target: Side,
    *,
    field_mappings: Iterable[FieldMapping] | None = None,
) -> list[FieldRule]:
    """The enabled field mappings that apply in `direction` (or those given, whatever their direction)."""
    rules = []
    given = field_mappings is not None
    if field_mappings is None:
        field_mappings = mapping.field_mappings.filter(enabled=True).select_related("lookup_mapping")
    for fm in field_mappings:
        if not given and fm.direction not in (direction, Direction.BIDIRECTIONAL):
            continue
        if source.is_dataverse:
            source_field, target_field = fm.dataverse_field, fm.bc_field
        else:
            source_field, target_field = fm.bc_field, fm.dataverse_field
        if not target_field:
            continue
        if not source_field and fm.constant_value == "":
            continue
        value_map = {str(k): v for k, v in (fm.value_map or {}).items()}
        if source.is_dataverse:  # the map is stored Business Central -> Dataverse
            value_map = {str(v): k for k, v in value_map.items()}
        lm = fm.lookup_mapping if fm.lookup_mapping_id else None
        lookup = LookupRule(lm.pk, lm.name, lm.bc_entity_set, lm.dataverse_entity_set) if lm is not None else None
        rules.append(
            FieldRule(
                source_field=source.read_field_name(source_field, is_lookup=lookup is not None)
                if source_field
                else None,
                target_field=target_field,
                constant=None if source_field else fm.constant_value,
                transformation=list(fm.transformation or []),
                value_map=value_map,
                lookup=lookup,
                clear_on_failed_lookup=fm.clear_value_on_failed_lookup,
                not_null=fm.not_null,
                bidirectional=fm.direction == Direction.BIDIRECTIONAL,
                conflict_policy=fm.update_conflict_resolution,
                label=str(fm),
                field_mapping_id=fm.pk,
                add_missing_options=fm.add_missing_options
                and bool(source_field)
                and (target.is_dataverse or bool(fm.bc_code_table)),
                code_table=fm.bc_code_table,
            )
        )
    if not given and target.is_dataverse:
        rules += company_stamp_rules(mapping)
    return rules


def company_stamp_rules(mapping: TableMapping) -> list[FieldRule]:
    """Stamp the mapping's company on the Dataverse rows it inserts or modifies, as Business Central does
    (domain.md 3.10), like a constant field mapping. A multi-company mapping stamps the rows it creates only
    (`company_stamp_on_insert`): a row several companies share keeps the company that made it."""
    reference = mapping.company_reference()
    if reference is None or mapping.multi_company:
        return []
    return [
        FieldRule(
            source_field=None,
            target_field=mapping.dataverse_company_field,
            constant=reference,
            binds=COMPANY_ENTITY_SET,
            label=f"company -> {mapping.dataverse_company_field}",
        )
    ]


def company_stamp_on_insert(mapping: TableMapping) -> dict[str, str]:
    """The company a multi-company mapping stamps on the Dataverse rows it creates, as a new-record value."""
    reference = mapping.company_reference()
    if reference is None or not mapping.multi_company:
        return {}
    return {f"{mapping.dataverse_company_field}@odata.bind": reference}


def source_fields(rules: list[FieldRule]) -> list[str]:
    return [rule.source_field for rule in rules if rule.source_field]


def is_blank(value: Any) -> bool:
    return value is None or value == "" or value == ZERO_GUID


def _looks_like_guid(value: Any) -> bool:
    try:
        UUID(str(value))
    except ValueError:
        return False
    return True


def bc_key_field(rule: FieldRule, bc_field: str) -> str:
    """The property of the lookup table that a Business Central lookup field holds.

    `currencyId` holds the currency's id; `currencyCode` and `salespersonCode` hold the `code` of a currency or a
    salesperson; a `...Number` field holds the `number` of a customer, vendor or contact.
    """
    if bc_field.endswith("Id"):
        return "id"
    if bc_field.endswith("Number"):
        return "number"
    return "code"


# A lookup value that names Business Central's local currency (LCY), which is no row of its currencies table:
# the field is left as it is on the other side rather than cleared or failed.
LOCAL = object()


def _lookup(rule: FieldRule) -> LookupRule:
    assert rule.lookup is not None  # the resolver keeps lookup rules only
    return rule.lookup


class LookupResolver:
    """Resolves lookup values through the couplings of the lookup mappings, a page at a time.

    Business Central lookup fields hold codes (`currencyCode`), while couplings hold ids; the code <-> id pairs
    of the (small) lookup tables are read from Business Central once per run and kept.

    A code that is no row of the lookup table is Business Central's way of naming its local currency (a blank
    currency code reads back as the LCY code); likewise a Dataverse row whose code Business Central does not list
    (the organization's base currency). Neither is coupled, and neither is an error: the field is not written.

    In a preview of a chain, `planned` holds the couplings the earlier mappings' previews would make: a lookup
    coupled only there resolves as the real run, which runs those mappings first, would resolve it.
    """

    def __init__(
        self,
        rules: list[FieldRule],
        source: Side,
        bc_client: RemoteClient,
        dataverse_client: RemoteClient | None = None,
        planned: PlannedCouplings | None = None,
    ) -> None:
        self.rules = [rule for rule in rules if rule.lookup and rule.source_field]
        self.planned = planned
        self.source = source
        self.bc_client = bc_client
        self.dataverse_client = dataverse_client
        # (entity set, key field) -> {"by_key": {key: id}, "by_id": {id: key}}
        self._bc_keys: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._resolved: dict[tuple[int, str], Any] = {}
        self._missing: set[tuple[int, str]] = set()

    def prepare(self, rows: list[Row]) -> None:
        """Load what the lookups of this page need: one coupling query per lookup rule."""
        for rule in self.rules:
            name = rule.source_field or ""  # every rule kept here reads a source field
            values = {str(row.get(name)) for row in rows if not is_blank(row.get(name))}
            values = {v for v in values if (id(rule), v) not in self._resolved and (id(rule), v) not in self._missing}
            if values:
                self._load(rule, values)

    def _bc_table(self, rule: FieldRule, key_field: str) -> dict[str, dict[str, Any]]:
        cache_key = (_lookup(rule).bc_entity_set, key_field)
        if cache_key not in self._bc_keys:
            by_key: dict[str, Any] = {}
            by_id: dict[str, Any] = {}
            if key_field != "id":
                for page in self.bc_client.read_pages(_lookup(rule).bc_entity_set, select=["id", key_field]):
                    for row in page.rows:
                        by_key[str(row.get(key_field))] = str(row["id"])
                        by_id[str(row["id"])] = row.get(key_field)
            self._bc_keys[cache_key] = {"by_key": by_key, "by_id": by_id}
        return self._bc_keys[cache_key]

    def _load(self, rule: FieldRule, values: set[str]) -> None:
        lookup = _lookup(rule)
        couplings = Coupling.objects.filter(table_mapping_id=lookup.mapping_id, pending=False)
        if self.source.is_dataverse:
            key_field = bc_key_field(rule, rule.target_field)
            ids = [v for v in values if _looks_like_guid(v)]
            pairs = couplings.filter(dataverse_id__in=ids).values_list("dataverse_id", "bc_id")
            table = self._bc_table(rule, key_field) if key_field != "id" else None
            for dataverse_id, bc_id in pairs:
                target_value = str(bc_id) if table is None else table["by_id"].get(str(bc_id))
                if target_value is not None:
                    self._resolved[(id(rule), str(dataverse_id))] = target_value
            for value in ids:
                pair = self.planned.by_dataverse_id(lookup.mapping_id, value) if self.planned is not None else None
                if pair is None or (id(rule), value) in self._resolved:
                    continue
                if table is None:
                    self._resolved[(id(rule), value)] = str(pair.bc_id)
                elif (code := table["by_id"].get(str(pair.bc_id), pair.bc_values.get(key_field))) is not None:
                    self._resolved[(id(rule), value)] = code
            if table is not None and lookup.dataverse_entity_set == "transactioncurrencies":
                uncoupled = [v for v in ids if (id(rule), v) not in self._resolved]
                for value in self._codes_not_in_business_central(rule, key_field, uncoupled, table["by_key"]):
                    self._resolved[(id(rule), value)] = LOCAL
        else:
            key_field = bc_key_field(rule, rule.source_field or "")
            if key_field == "id":
                bc_ids = {v: v for v in values if _looks_like_guid(v)}
            else:
                by_key = self._bc_table(rule, key_field)["by_key"]
                bc_ids = {v: by_key[v] for v in values if v in by_key}
                if lookup.bc_entity_set == "currencies":
                    for value in values - set(bc_ids):
                        self._resolved[(id(rule), value)] = LOCAL
            partners = dict(couplings.filter(bc_id__in=list(bc_ids.values())).values_list("bc_id", "dataverse_id"))
            for value, bc_text in bc_ids.items():
                partner: UUID | str | None = partners.get(UUID(bc_text))
                if partner is None and self.planned is not None:
                    pair = self.planned.by_bc_id(lookup.mapping_id, bc_text)
                    partner = pair.dataverse_id if pair is not None else None
                if partner is not None:
                    self._resolved[(id(rule), value)] = partner
        for value in values:
            if (id(rule), value) not in self._resolved:
                self._missing.add((id(rule), value))

    def _codes_not_in_business_central(
        self, rule: FieldRule, key_field: str, dataverse_ids: list[str], bc_codes: dict[str, Any]
    ) -> list[str]:
        """Dataverse lookup rows whose code (per the lookup mapping's field mappings) Business Central lacks."""
        if not dataverse_ids or self.dataverse_client is None:
            return []
        code_column = (
            FieldMapping.objects.filter(table_mapping_id=_lookup(rule).mapping_id, bc_field=key_field)
            .exclude(dataverse_field="")
            .values_list("dataverse_field", flat=True)
            .first()
        )
        if not code_column:
            return []
        rows = self.dataverse_client.read_by_ids(
            _lookup(rule).dataverse_entity_set, [UUID(i) for i in dataverse_ids], select=[code_column]
        )
        return [str(row_id) for row_id, row in rows.items() if str(row.get(code_column) or "") not in bc_codes]

    def resolve(self, rule: FieldRule, value: Any) -> Any:
        key = (id(rule), str(value))
        if key in self._resolved:
            return self._resolved[key]
        if rule.clear_on_failed_lookup:
            return None
        other = "Dataverse row" if not self.source.is_dataverse else "Business Central record"
        name = _lookup(rule).mapping_name
        raise RecordFailure(
            ErrorClass.MISSING_DEPENDENCY,
            f"{rule.label}: the {name} record {value!r} must be coupled to a {other} first. "
            f"Couple it (or synchronize the {name} mapping), then retry.",
        )


def desired_value(rule: FieldRule, row: Row, lookups: LookupResolver, target: Side) -> tuple[bool, Any]:
    """Return (write?, value) for one field of one source row. Raises RecordFailure."""
    value = row.get(rule.source_field) if rule.source_field else rule.constant
    if rule.transformation and isinstance(value, str):
        try:
            value = apply_transformation(rule.transformation, value)
        except ValueError as exc:
            raise RecordFailure(ErrorClass.VALIDATION, f"{rule.label}: transformation failed: {exc}") from None
    if rule.value_map and not is_blank(value):
        key = str(value).lower() if isinstance(value, bool) else str(value)
        if key not in rule.value_map:
            raise RecordFailure(
                ErrorClass.VALIDATION,
                f"{rule.label}: the value {value!r} has no entry in the field mapping's value map; add one.",
            )
        value = rule.value_map[key]
    if rule.lookup:
        value = None if is_blank(value) else lookups.resolve(rule, value)
        if value is LOCAL:
            return False, None
        if target.is_dataverse and value is not None:
            value = f"/{rule.lookup.dataverse_entity_set}({value})"
    if rule.not_null and is_blank(value):
        return False, None
    return True, value


def current_value(rule: FieldRule, target_row: Row, target: Side) -> Any:
    value = target_row.get(rule.current_key(target))
    if rule.is_reference and target.is_dataverse and value:
        return f"/{rule.lookup.dataverse_entity_set if rule.lookup else rule.binds}({value})"
    return value


# A Dataverse lookup as written (`/currencies(<id>)`); it reads back as the bare id in `_x_value`.
_BIND = re.compile(r"^/[A-Za-z_][\w]*\(([0-9A-Fa-f-]{36})\)$")


def fingerprint(value: Any) -> str:
    """A short digest of a field's value as one side stores it, to tell later whether that side changed it.

    Normalized as `values_equal` compares: blanks alike, numbers by value, GUIDs case-blind (a bound lookup as its
    id). Ten hex digits: the CRC-32 of the normalized text and its length, so values of different lengths never
    collide and a change to a value of the same length goes unseen once in four billion. Cheap on purpose: a full
    synchronization fingerprints every field of every record (a cryptographic digest took four times as long, and
    nothing here is adversarial). A coupling of 20 fields keeps about 600 bytes instead of the values themselves
    (some are long texts, some personal data).
    """
    if value is None or value == "" or value == ZERO_GUID:
        return ""
    kind = type(value)
    if kind is str:
        text = value
        if len(text) == 36 and _looks_like_guid(text):
            text = "g:" + text.lower()
        elif text[0] == "/":
            bound = _BIND.match(text)
            if bound:
                text = "g:" + bound.group(1).lower()
    elif kind is bool:
        text = f"b:{value}"
    elif kind is int:
        text = f"n:{value}"
    elif isinstance(value, float | Decimal):
        try:
            number = Decimal(str(value)).normalize()
            text = f"n:{int(number) if number == number.to_integral_value() else number}"
        except InvalidOperation:
            text = f"s:{value}"
    else:
        text = "j:" + json.dumps(value, sort_keys=True, default=str)
    data = text.encode()
    return f"{zlib.crc32(data):08x}{len(data) & 0xFF:02x}"


def values_equal(desired: Any, current: Any, *, target: Side) -> bool:
    """Compare as the target would store it: blanks alike, numbers by value, GUIDs and BC Code case-blind."""
    if is_blank(desired) and is_blank(current):
        return True
    if is_blank(desired) or is_blank(current):
        return False
    if isinstance(desired, bool) or isinstance(current, bool):
        return bool(desired) == bool(current) and type(desired) is type(current)
    if isinstance(desired, int | float | Decimal) or isinstance(current, int | float | Decimal):
        try:
            return Decimal(str(desired)) == Decimal(str(current))
        except InvalidOperation:
            return False
    if isinstance(desired, datetime) or isinstance(current, datetime):
        return str(desired) == str(current)
    desired_text, current_text = str(desired), str(current)
    if desired_text == current_text:
        return True
    if _looks_like_guid(desired_text) and _looks_like_guid(current_text):
        return UUID(desired_text) == UUID(current_text)
    if not target.is_dataverse and current_text == current_text.upper() and desired_text.upper() == current_text:
        # Business Central stores Code fields upper-cased; "abc" written there reads back as "ABC".
        return True
    return desired_text.strip() == current_text.strip() and not target.is_dataverse
